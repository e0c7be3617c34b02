"""Adversarial review of the follow-up sequences (issue 25): consent bypass, sends after
unsubscribing, doubles, the scheduler's SQL, hostile Markdown in a step and the admin."""

from __future__ import annotations

import datetime
import html

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from backpain_report.delivery.emails import build_followup_email
from backpain_report.delivery.sending import Outcome, delivery_send
from backpain_report.models import Article, Delivery, FollowUpStep, Report, Subscriber
from backpain_report.services.followups import followups_schedule
from backpain_report.services.subscribers import subscriber_unsubscribe
from tests.samples import followup_signup

DAY = datetime.timedelta(days=1)
CHANGE = "admin:backpain_report_followupstep_change"
SEND_TEST = "admin:backpain_report_followupstep_send_test"
HOSTILE = (
    '## Hi\n\n<script>alert(1)</script><iframe src="https://evil.example/"></iframe>'
    "<style>body{display:none}</style>\n\n"
    "[click](javascript:alert(2)) [data](data:text/html;base64,PHNjcmlwdD4=)\n\n"
    "![pixel](data:image/png;base64,iVBORw0KGgo=) <img src=x onerror=alert(3)>\n\n"
    '<a href="https://ok.example/" onclick="alert(4)" style="color:red">ok</a>\n\n'
    "</textarea>\"'><b>x</b>"
)


@pytest.fixture(autouse=True)
def no_bundled_steps(report):
    FollowUpStep.objects.all().delete()


# --- Consent -------------------------------------------------------------------------------


def test_a_forged_claim_in_a_language_without_steps_is_not_recorded(
    client, article, report, no_broker
):
    report.followups_enabled = True
    report.save()
    FollowUpStep.objects.create(report=report, language="de", delay_days=2, subject="S", body="B")
    followup_signup(client, article, followups="1")  # English: the page offered no follow-ups
    reader = Subscriber.objects.get(email_canonical="ann@example.com")
    assert not reader.followups_consented and reader.consent_version == "1"


def test_a_followup_consent_for_one_report_does_not_cover_another(
    clock, sequence, report, make_subscriber
):
    """A reader who agreed to report A's follow-ups, then got report B (a sign-up on B's page
    while B offered none), gets none of B's when B's sequence is turned on later."""
    other = Report.objects.create(title="Knees", slug="knees", body="Knees.")
    reader = make_subscriber(followups_consented=True)  # signed up on A's article
    Delivery.objects.create(
        subscriber=reader, report=other, edition=1, status="sent", sent_at=timezone.now()
    )
    other.followups_enabled = True
    other.save()
    FollowUpStep.objects.create(report=other, delay_days=2, subject="Knees day 2", body="B")
    clock.shift(3 * 86400)
    assert followups_schedule() == 0


def test_a_subscribed_readers_forged_sign_up_under_double_opt_in_grants_nothing(
    client, settings, article, sequence, make_subscriber, no_broker
):
    """Anyone may sign up anyone's address: a confirmed reader who never agreed to follow-ups
    is not given them by a sign-up nobody confirmed."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    make_subscriber(email="ann@example.com", confirmed_at=timezone.now() - DAY)
    followup_signup(client, article, followups="1")
    assert not Subscriber.objects.get(email_canonical="ann@example.com").followups_consented


# --- Unsubscribing and the scheduler -------------------------------------------------------


def test_a_followup_made_for_a_reader_who_just_unsubscribed_is_not_sent(
    clock, sequence, report, make_subscriber, scripted_mail
):
    """The scheduler read the reader as subscribed, the reader unsubscribed (nothing pending to
    cancel yet), then the scheduler's row was committed: the worker does not send it."""
    reader = make_subscriber(followups_consented=True)
    Delivery.objects.create(
        subscriber=reader, report=report, edition=1, status="sent", sent_at=timezone.now()
    )
    clock.shift(3 * 86400)
    subscriber_unsubscribe(subscriber_id=reader.pk)
    late = Delivery.objects.create(
        subscriber=reader, report=report, edition=1, step=sequence, kind="followup"
    )
    assert delivery_send(delivery_id=late.pk).outcome is Outcome.SKIPPED
    late.refresh_from_db()
    assert late.status == "cancelled" and not mail.outbox
    assert followups_schedule() == 0  # nor is one made again


def test_the_schedulers_sql_reads_only_the_window(clock, sequence, report, make_subscriber):
    reader = make_subscriber(followups_consented=True)
    Delivery.objects.create(
        subscriber=reader, report=report, edition=1, status="sent", sent_at=timezone.now()
    )
    clock.shift(3 * 86400)
    with CaptureQueriesContext(connection) as captured:
        assert followups_schedule() == 1
    reads = [q["sql"] for q in captured if "DISTINCT" in q["sql"]]
    assert len(reads) == 1
    [sql] = reads
    # Bounded on both sides by the report deliveries' sending time; the subscriber is joined
    # by key, never scanned for a language or consent on its own.
    assert '"sent_at" >= ' in sql and '"sent_at" < ' in sql
    # One statement: the INSERT's SELECT over the query and its NOT EXISTS probe, nothing else.
    assert sql.startswith("INSERT INTO") and sql.count("SELECT") == 3


# --- Hostile Markdown ----------------------------------------------------------------------


def _check_clean(markup: str) -> None:
    lowered = markup.lower()
    for bad in ("<script", "<iframe", "<style", "javascript:", "data:", "onerror", "onclick"):
        assert bad not in lowered, bad


def test_hostile_markdown_in_a_step_is_cleaned_in_the_email(sequence, report, make_subscriber):
    sequence.body = HOSTILE
    sequence.save()
    reader = make_subscriber(followups_consented=True)
    delivery = Delivery.objects.create(
        subscriber=reader, report=report, edition=1, step=sequence, kind="followup"
    )
    with translation.override("en"):
        message = build_followup_email(delivery=delivery, message_id="<1.a@example.com>")
    body_html = next(body for body, mime in message.alternatives if mime == "text/html")
    _check_clean(body_html.split("</style>", 1)[-1])  # the template's own CSS comes first
    assert 'href="https://ok.example/"' in body_html


def test_hostile_markdown_in_the_admin_preview_stays_in_its_sandbox(admin_client, sequence):
    sequence.subject = '"><script>alert(5)</script>'
    sequence.body = HOSTILE
    sequence.save()
    page = admin_client.get(reverse(CHANGE, args=[sequence.pk])).content.decode()
    assert "<script>alert" not in page  # neither subject nor body breaks out
    assert page.count('sandbox=""') == 1
    srcdoc = html.unescape(page.split('srcdoc="', 1)[1].split('"', 1)[0])
    _check_clean(srcdoc.split("</style>", 1)[-1])


# --- The admin -----------------------------------------------------------------------------


def _staff(client, *codenames, email="editor@example.com") -> User:
    user = User.objects.create_user("staff", email=email, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_a_test_to_me_goes_only_to_the_staff_address_whatever_is_posted(client, sequence):
    _staff(client, "view_followupstep", "change_followupstep")
    client.post(reverse(SEND_TEST, args=[sequence.pk]), {"to": "victim@example.com"})
    [message] = mail.outbox
    assert message.to == ["editor@example.com"] and not message.cc and not message.bcc


def test_an_address_with_a_header_injected_sends_nothing(client, sequence):
    _staff(client, "view_followupstep", "change_followupstep", email="a@example.com\nBcc: v@x.y")
    response = client.post(reverse(SEND_TEST, args=[sequence.pk]), follow=True)
    assert not mail.outbox
    assert response.status_code == 200


def test_view_only_staff_cannot_send_a_test(client, sequence):
    _staff(client, "view_followupstep")
    assert client.post(reverse(SEND_TEST, args=[sequence.pk])).status_code == 403
    assert not mail.outbox


def test_a_step_cannot_be_deleted_once_it_has_deliveries(sequence, report, make_subscriber):
    from django.db.models import ProtectedError

    Delivery.objects.create(
        subscriber=make_subscriber(), report=report, edition=1, step=sequence, kind="followup"
    )
    with pytest.raises(ProtectedError):
        sequence.delete()
    assert Article.objects.exists()


def test_a_hostile_subject_is_escaped_on_every_admin_page(
    admin_client, sequence, report, make_subscriber
):
    sequence.subject = "<script>alert(7)</script>"
    sequence.save()
    reader = make_subscriber(followups_consented=True)
    Delivery.objects.create(
        subscriber=reader,
        report=report,
        edition=1,
        step=sequence,
        kind="followup",
        status="sent",
        sent_at=timezone.now(),
    )
    pages = [
        reverse("admin:backpain_report_followupstep_changelist"),
        reverse(CHANGE, args=[sequence.pk]),
        reverse("admin:backpain_report_report_change", args=[report.pk]),
        reverse("admin:backpain_report_subscriber_change", args=[reader.pk]),
        reverse("admin:backpain_report_delivery_changelist"),
        reverse("admin:backpain_report_pageview_changelist"),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "<script>alert(7)" not in response.content.decode(), url


# --- Time ----------------------------------------------------------------------------------


def test_a_local_midnight_the_clocks_skip_neither_loses_nor_doubles_a_reader(
    clock, settings, sequence, report, make_subscriber
):
    """America/Santiago springs forward at midnight (00:00 does not exist on that day): the
    scheduler's day boundaries still put each reader in exactly one window."""
    from zoneinfo import ZoneInfo

    settings.TIME_ZONE = "America/Santiago"
    zone = ZoneInfo("America/Santiago")
    year = timezone.now().year + 1
    # The day the clocks go from 00:00 to 01:00 (early September; the rule has moved over the
    # years, so find it): the first whose noon has another offset than the day before's.
    day = datetime.date(year, 8, 1)
    while datetime.datetime.combine(day, datetime.time(12), tzinfo=zone).utcoffset() == (
        datetime.datetime.combine(day - DAY, datetime.time(12), tzinfo=zone).utcoffset()
    ):
        day += DAY
    assert (
        datetime.datetime.combine(day, datetime.time(1, 30), tzinfo=zone).utcoffset()
        != datetime.datetime.combine(day - DAY, datetime.time(12), tzinfo=zone).utcoffset()
    )
    readers = []
    for sent_local in (
        datetime.datetime.combine(day - DAY, datetime.time(23, 59), tzinfo=zone),
        datetime.datetime.combine(day, datetime.time(1, 0), tzinfo=zone),  # the day's start
        datetime.datetime.combine(day, datetime.time(23, 0), tzinfo=zone),
    ):
        reader = make_subscriber(followups_consented=True)
        Delivery.objects.create(
            subscriber=reader,
            report=report,
            edition=1,
            status="sent",
            sent_at=sent_local.astimezone(datetime.timezone.utc),
        )
        readers.append(reader)
    FollowUpStep.objects.filter(pk=sequence.pk).update(
        created_at=datetime.datetime.combine(day - 3 * DAY, datetime.time(12), tzinfo=zone)
    )
    made = []
    moment = datetime.datetime.combine(day - DAY, datetime.time(12), tzinfo=zone)
    while moment < datetime.datetime.combine(day + 4 * DAY, datetime.time(12), tzinfo=zone):
        clock.move_to(moment)
        followups_schedule()
        made.append(
            set(Delivery.objects.filter(kind="followup").values_list("subscriber_id", flat=True))
        )
        moment += datetime.timedelta(hours=1)
    assert made[-1] == {reader.pk for reader in readers}
    assert Delivery.objects.filter(kind="followup").count() == 3


# --- Editions ------------------------------------------------------------------------------


def test_an_edit_racing_a_worker_keeps_the_record_true(
    monkeypatch, sequence, report, make_subscriber
):
    """The editor's save checks whether the edition went out; a worker claims a queued row of it
    and reads its text right then, before the save commits: what that reader got is still what
    the record's edition says."""
    from backpain_report.delivery.emails import followup_text
    from backpain_report.delivery.sending import delivery_claim
    from backpain_report.services import followups

    queued = Delivery.objects.create(
        subscriber=make_subscriber(followups_consented=True),
        report=report,
        edition=1,
        step=sequence,
        kind="followup",
    )
    check = followups._edition_sent
    claimed = {}

    def check_then_claim(step):
        went_out = check(step)
        claimed["delivery"] = delivery_claim(delivery_id=queued.pk)  # the worker, meanwhile
        return went_out

    monkeypatch.setattr(followups, "_edition_sent", check_then_claim)
    sequence.body = "Corrected text."
    followups.step_save(sequence)
    delivery = claimed["delivery"]
    with translation.override("en"):
        sent = build_followup_email(delivery=delivery, message_id="<2.a@example.com>")
    sequence.refresh_from_db()
    recorded = followup_text(sequence, delivery.edition)
    # The text the record names is the text sent.
    assert recorded[1] in sent.body and sent.subject == recorded[0]


# --- The development clock -----------------------------------------------------------------


def test_a_followup_made_as_of_a_later_moment_is_swept_if_its_publish_is_lost(
    sequence, report, make_subscriber, settings, no_broker, clock
):
    """``--as-of`` runs the scheduler as of a later moment; the rows it makes are stamped with
    the real time, so a publish lost to the broker is re-published by the next sweeps, not
    only weeks later."""
    from backpain_report.delivery.sweep import deliveries_sweep

    settings.DEBUG = True
    reader = make_subscriber(followups_consented=True)
    Delivery.objects.create(
        subscriber=reader, report=report, edition=1, status="sent", sent_at=timezone.now()
    )
    assert followups_schedule(timezone.now() + 3 * DAY) == 1  # its publish: lost
    [followup] = Delivery.objects.filter(kind="followup")
    assert followup.enqueued_at <= timezone.now()
    no_broker.clear()
    clock.shift(3600)
    deliveries_sweep()
    assert followup.pk in no_broker


# --- The one-statement insert on older databases ------------------------------------------


def _due_readers(report, count: int) -> None:
    """``count`` readers who agreed to follow-ups, their report sent now (bulk: many)."""
    start = Subscriber.objects.count()
    readers = Subscriber.objects.bulk_create(
        Subscriber(
            email=f"older{n}@example.com",
            email_canonical=f"older{n}@example.com",
            name="R",
            followups_consented=True,
        )
        for n in range(start, start + count)
    )
    Delivery.objects.bulk_create(
        Delivery(subscriber=reader, report=report, edition=1, status="sent", sent_at=timezone.now())
        for reader in readers
    )


def _refusing(words: str):
    """An execute wrapper that fails every statement containing ``words``, as a database
    without that syntax would."""

    def execute(run, sql, params, many, context):
        if words in sql.upper():
            raise OperationalError(f'near "{words}": syntax error')
        return run(sql, params, many, context)

    return execute


def _variables_limited(limit: int):
    """An execute wrapper that fails a statement with more than ``limit`` parameters, as
    SQLite before 3.32 does by default (999) and psycopg's server-side binding (65,535)."""

    def execute(run, sql, params, many, context):
        if params is not None and len(params) > limit:
            raise OperationalError("too many SQL variables")
        return run(sql, params, many, context)

    return execute


def test_the_scheduler_works_on_a_database_whose_insert_returns_no_rows(
    clock, sequence, report, monkeypatch
):
    """Django 5.2 (supported) runs on SQLite from 3.31 (Ubuntu 20.04; Debian 11 has 3.34);
    ``INSERT ... RETURNING`` came in 3.35. There the one statement was a syntax error on every
    pass: no follow-up was ever made, and the sweep task, which schedules first, died with it.
    Where the database cannot return rows from an insert, the portable way makes them."""
    _due_readers(report, 3)
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    clock.shift(3 * 86400)
    with connection.execute_wrapper(_refusing("RETURNING")):
        assert followups_schedule() == 3
    assert Delivery.objects.filter(kind="followup", step=sequence).count() == 3


def test_the_portable_insert_keeps_under_an_old_sqlites_variable_limit(
    clock, sequence, report, monkeypatch
):
    """The way SQLite before 3.35 takes: a default build before 3.32 allows 999 variables per
    statement (Django 5.2 assumes as much), and the rows of a batch of 1,000 were looked up
    with 1,004. Every reader is made, whatever their number."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's limit (bulk_create batches by it there only)")
    _due_readers(report, 1500)
    features = type(connection.features)
    monkeypatch.setattr(features, "can_return_rows_from_bulk_insert", False)
    monkeypatch.setattr(features, "max_query_params", 999)
    clock.shift(3 * 86400)
    with connection.execute_wrapper(_variables_limited(999)):
        assert followups_schedule() == 1500


def test_a_refused_publish_of_a_huge_pass_is_recorded_for_the_sweep(
    clock, sequence, report, monkeypatch, django_capture_on_commit_callbacks
):
    """A pass publishes all its rows at once (the one-statement insert returns them all): when
    the broker refuses them, marking them ``publish_failed_at`` took one UPDATE with a
    parameter per row, which a database's limit refuses (psycopg's server-side binding past
    65,535 rows, an old SQLite past 999): nothing was marked, and the sweep waited a grace
    period for rows it could have re-published at once."""
    from backpain_report import broker

    def refused(name, **kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", refused)
    _due_readers(report, 1500)
    clock.shift(3 * 86400)
    limited = connection.execute_wrapper(_variables_limited(999))
    with limited, django_capture_on_commit_callbacks(execute=True):
        assert followups_schedule() == 1500
    failed = Delivery.objects.filter(kind="followup", publish_failed_at__isnull=False)
    assert failed.count() == 1500
