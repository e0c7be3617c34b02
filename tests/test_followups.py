"""Follow-up sequences (issue 25): consent, the scheduler (due times, DST, pause and resume, two
schedulers, cost), editions, the follow-up email, sending rules and the development command."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from backpain_report.delivery.sending import (
    FOLLOWUP_OFF_ERROR,
    FOLLOWUPS_NOT_AGREED_ERROR,
    UNSUBSCRIBED_ERROR,
    Outcome,
    delivery_send,
)
from backpain_report.models import Delivery, FollowUpEdition, FollowUpStep, Subscriber
from backpain_report.rights.consent import UNCONFIRMED_ERROR
from backpain_report.rights.suppression import subscriber_suppress
from backpain_report.services import followups, privacy, subscribers
from backpain_report.services.followups import (
    followup_due,
    followups_schedule,
    local_moment,
    step_save,
)
from tests.samples import followup_signup

UTC = datetime.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
DAY = datetime.timedelta(days=1)


def _last_sunday(year: int, month: int) -> datetime.date:
    day = datetime.date(year, month + 1, 1) - DAY
    return day - datetime.timedelta(days=(day.weekday() + 1) % 7)


def _next_year() -> int:
    return timezone.now().year + 1


@pytest.fixture(autouse=True)
def no_bundled_steps(report):
    """These tests make their own steps: the seed's bundled ones (tests/conftest.py seeds the
    content) would send more than the test means to."""
    FollowUpStep.objects.all().delete()


def _reader(make_subscriber, **fields) -> Subscriber:
    return make_subscriber(followups_consented=True, **fields)


def _sent_report(make_delivery, subscriber, sent_at) -> Delivery:
    return make_delivery(subscriber=subscriber, status="sent", sent_at=sent_at)


def _followups(step=None):
    rows = Delivery.objects.filter(kind=Delivery.Kind.FOLLOWUP)
    return rows.filter(step=step) if step is not None else rows


def _at(zone: ZoneInfo, day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour, minute), tzinfo=zone)


# --- Consent -------------------------------------------------------------------------------


def test_the_form_names_the_followups_only_while_the_sequence_is_on(
    client, article, report, settings
):
    page = client.get(article.get_absolute_url()).content.decode()
    assert "follow-up emails" not in page and 'name="followups"' not in page
    report.followups_enabled = True
    report.save()
    step = FollowUpStep.objects.create(report=report, delay_days=2, subject="S", body="B")
    page = client.get(article.get_absolute_url()).content.decode()
    assert "a few follow-up emails about it" in page  # the stored page was dropped
    assert 'name="followups" value="1"' in page
    step.is_active = False
    step.save()
    page = client.get(article.get_absolute_url()).content.decode()
    assert "follow-up emails" not in page and 'name="followups"' not in page


def test_a_consent_that_named_the_followups_covers_them(client, article, sequence, no_broker):
    assert followup_signup(client, article, followups="1").status_code == 303
    reader = Subscriber.objects.get(email_canonical="ann@example.com")
    assert reader.followups_consented
    assert reader.consent_version == "1+followups"
    assert "a few follow-up emails" in reader.consent_text


def test_a_consent_that_did_not_name_them_covers_none(client, article, sequence, no_broker):
    followup_signup(client, article)  # a page stored before the sequence was on: no followups field
    reader = Subscriber.objects.get(email_canonical="ann@example.com")
    assert not reader.followups_consented
    assert reader.consent_version == "1" and "follow-up" not in reader.consent_text


def test_a_claim_of_followups_the_report_does_not_offer_is_not_recorded(
    client, article, report, no_broker
):
    followup_signup(client, article, followups="1")  # forged, or the sequence was switched off
    reader = Subscriber.objects.get(email_canonical="ann@example.com")
    assert not reader.followups_consented
    assert reader.consent_version == "1" and "follow-up" not in reader.consent_text


def test_a_resubscription_takes_the_new_consents_answer(
    client, article, sequence, no_broker, make_subscriber
):
    make_subscriber(
        email="ann@example.com", followups_consented=True, unsubscribed_at=timezone.now() - DAY
    )
    followup_signup(client, article)  # the new consent did not name them
    assert not Subscriber.objects.get(email_canonical="ann@example.com").followups_consented


def test_a_reader_who_did_not_agree_gets_no_followups(
    clock, sequence, make_subscriber, make_delivery
):
    agreed, old = _reader(make_subscriber), make_subscriber()  # old: a consent without them
    for subscriber in (agreed, old):
        _sent_report(make_delivery, subscriber, timezone.now())
    clock.shift(3 * 86400)
    assert followups_schedule() == 1
    assert list(_followups().values_list("subscriber", flat=True)) == [agreed.pk]


def test_double_opt_in_waits_for_the_confirmation(
    clock, settings, sequence, make_subscriber, make_delivery
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    reader = _reader(make_subscriber, confirmation_requested_at=timezone.now())
    _sent_report(make_delivery, reader, timezone.now())  # e.g. sent before double opt-in
    clock.shift(3 * 86400)
    assert followups_schedule() == 0
    # One made while it was confirmed and then asked again is not sent either.
    Subscriber.objects.filter(pk=reader.pk).update(confirmed_at=timezone.now())
    FollowUpStep.objects.filter(pk=sequence.pk).update(scheduled_through=None)
    assert followups_schedule() == 1
    Subscriber.objects.filter(pk=reader.pk).update(confirmed_at=None)
    [followup] = _followups()
    assert delivery_send(delivery_id=followup.pk).outcome is Outcome.SKIPPED
    followup.refresh_from_db()
    assert (followup.status, followup.last_error) == ("cancelled", UNCONFIRMED_ERROR)


@pytest.fixture
def three_pending(report, sequence, make_subscriber):
    """A reader with a pending follow-up for each of three steps."""
    reader = _reader(make_subscriber)
    steps = [sequence] + [
        FollowUpStep.objects.create(
            report=report, position=n, delay_days=n * 7, subject="S", body="B"
        )
        for n in (2, 3)
    ]
    for step in steps:
        Delivery.objects.create(
            subscriber=reader, report=report, edition=1, step=step, kind=Delivery.Kind.FOLLOWUP
        )
    return reader


@pytest.mark.parametrize("stop", ["unsubscribe", "suppress", "erase"])
def test_unsubscribe_suppression_and_erasure_stop_every_pending_step(three_pending, stop):
    reader = three_pending
    if stop == "unsubscribe":
        subscribers.subscriber_unsubscribe(subscriber_id=reader.pk)
    elif stop == "suppress":
        subscriber_suppress(subscriber_id=reader.pk, reason="Hard bounce")
    else:
        privacy.subscriber_erase(subscriber=reader)
    assert set(_followups().values_list("status", flat=True)) == {"cancelled"}
    reader.refresh_from_db()
    assert followups_schedule() == 0


def test_a_purge_deletes_every_pending_step(three_pending):
    privacy.subscribers_delete(Subscriber.objects.filter(pk=three_pending.pk))
    assert not _followups().exists()


def test_a_followup_claimed_as_the_reader_unsubscribes_is_not_sent(three_pending, scripted_mail):
    followup = _followups().first()
    Subscriber.objects.filter(pk=three_pending.pk).update(unsubscribed_at=timezone.now())
    assert delivery_send(delivery_id=followup.pk).outcome is Outcome.SKIPPED
    followup.refresh_from_db()
    assert (followup.status, followup.last_error) == ("cancelled", UNSUBSCRIBED_ERROR)
    assert not mail.outbox


@pytest.mark.parametrize("switch", ["step", "sequence", "consent"])
def test_a_followup_whose_step_sequence_or_consent_is_off_is_cancelled(
    three_pending, switch, report
):
    followup = _followups().first()
    if switch == "step":
        FollowUpStep.objects.filter(pk=followup.step_id).update(is_active=False)
    elif switch == "sequence":
        type(report).objects.filter(pk=report.pk).update(followups_enabled=False)
    else:
        Subscriber.objects.filter(pk=three_pending.pk).update(followups_consented=False)
    assert delivery_send(delivery_id=followup.pk).outcome is Outcome.SKIPPED
    followup.refresh_from_db()
    expected = FOLLOWUPS_NOT_AGREED_ERROR if switch == "consent" else FOLLOWUP_OFF_ERROR
    assert (followup.status, followup.last_error) == ("cancelled", expected)
    assert not mail.outbox


# --- Due times and daylight saving time ------------------------------------------------------


def test_a_step_falls_due_at_the_send_hour_whole_days_after_the_report(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    day = datetime.date(_next_year(), 7, 10)
    sent = _at(BERLIN, day, 23, 50).astimezone(UTC)  # late evening: that day still counts
    assert followup_due(sent, 2) == _at(BERLIN, day + 2 * DAY, 9).astimezone(UTC)
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "FOLLOWUP_SEND_HOUR": 18}
    assert followup_due(sent, 7) == _at(BERLIN, day + 7 * DAY, 18).astimezone(UTC)


def test_the_send_hour_stays_local_across_the_clock_change(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    spring = _last_sunday(_next_year(), 3)
    before = followup_due(_at(BERLIN, spring - 3 * DAY, 12).astimezone(UTC), 2)
    after = followup_due(_at(BERLIN, spring - 1 * DAY, 12).astimezone(UTC), 2)
    assert before.astimezone(BERLIN).hour == after.astimezone(BERLIN).hour == 9
    assert (before.hour, after.hour) == (8, 7)  # UTC: winter +1, summer +2


def test_a_send_hour_the_clocks_skip_is_the_first_moment_after_the_gap(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "FOLLOWUP_SEND_HOUR": 2}
    spring = _last_sunday(_next_year(), 3)  # 02:00 to 03:00 does not exist
    due = followup_due(_at(BERLIN, spring - 2 * DAY, 12).astimezone(UTC), 2)
    assert due == datetime.datetime.combine(spring, datetime.time(1), tzinfo=UTC)
    assert due.astimezone(BERLIN).replace(tzinfo=None) == datetime.datetime.combine(
        spring, datetime.time(3)
    )


def test_a_send_hour_that_happens_twice_is_its_first_occurrence(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "FOLLOWUP_SEND_HOUR": 2}
    autumn = _last_sunday(_next_year(), 10)  # 02:00 to 03:00 happens twice
    due = followup_due(_at(BERLIN, autumn - 2 * DAY, 12).astimezone(UTC), 2)
    assert due == datetime.datetime.combine(autumn, datetime.time(0), tzinfo=UTC)  # 02:00 CEST
    assert local_moment(autumn, 3, BERLIN) - due == datetime.timedelta(hours=2)


@pytest.mark.parametrize("month", [3, 10], ids=["spring-forward", "autumn-fold"])
def test_the_scheduler_sends_on_the_dst_day_at_its_due_time_once(
    clock, settings, month, report, make_subscriber, make_delivery
):
    settings.TIME_ZONE = "Europe/Berlin"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "FOLLOWUP_SEND_HOUR": 2}
    change = _last_sunday(_next_year(), month)
    clock.move_to(_at(BERLIN, change - 3 * DAY, 12))
    report.followups_enabled = True
    report.save()
    step = FollowUpStep.objects.create(report=report, delay_days=2, subject="S", body="B")
    clock.move_to(_at(BERLIN, change - 2 * DAY, 12))
    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    due = followup_due(timezone.now(), 2)
    clock.move_to(due - datetime.timedelta(seconds=1))
    assert followups_schedule() == 0
    clock.move_to(due)
    assert followups_schedule() == 1
    clock.shift(3600)  # autumn: the same wall-clock hour again
    assert followups_schedule() == 0
    assert _followups(step).count() == 1


# --- The scheduler ---------------------------------------------------------------------------


def test_the_scheduler_makes_a_followup_when_due_and_publishes_it(
    clock, sequence, make_subscriber, make_delivery, no_broker, django_capture_on_commit_callbacks
):
    reader = _reader(make_subscriber)
    _sent_report(make_delivery, reader, timezone.now())
    due = followup_due(timezone.now(), 2)
    clock.move_to(due - datetime.timedelta(minutes=1))
    assert followups_schedule() == 0
    clock.move_to(due)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert followups_schedule() == 1
        assert no_broker == []  # published only once it commits
    assert len(callbacks) == 1
    [followup] = _followups()
    assert no_broker == [followup.pk]
    assert (followup.subscriber, followup.step, followup.edition) == (reader, sequence, 1)
    assert (followup.status, followup.reason, followup.report_id) == (
        "pending",
        "signup",
        sequence.report_id,
    )


def test_a_steps_language_picks_its_readers(
    clock, settings, report, make_subscriber, make_delivery
):
    report.followups_enabled = True
    report.save()
    german = FollowUpStep.objects.create(
        report=report, language="de", delay_days=2, subject="Wie geht es?", body="B"
    )
    english = FollowUpStep.objects.create(
        report=report, language="en", delay_days=2, subject="How are you?", body="B"
    )
    readers = {
        language: _reader(make_subscriber, language=language)
        for language in ("de", "en", "en-gb", "")  # "": the site's LANGUAGE_CODE
    }
    for reader in readers.values():
        _sent_report(make_delivery, reader, timezone.now())
    clock.shift(3 * 86400)
    assert followups_schedule() == 4
    assert set(_followups(german).values_list("subscriber", flat=True)) == {readers["de"].pk}
    assert set(_followups(english).values_list("subscriber", flat=True)) == {
        readers["en"].pk,
        readers["en-gb"].pk,
        readers[""].pk,
    }


def test_a_paused_step_resumed_within_the_limit_goes_to_the_readers_it_missed(
    clock, sequence, make_subscriber, make_delivery
):
    reader = _reader(make_subscriber)
    _sent_report(make_delivery, reader, timezone.now())
    sequence.is_active = False
    step_save(sequence)
    assert FollowUpStep.objects.get(pk=sequence.pk).paused_at is not None
    clock.move_to(followup_due(timezone.now(), 2) + datetime.timedelta(days=5))  # 7 d max
    assert followups_schedule() == 0  # paused
    sequence.is_active = True
    step_save(sequence)
    assert followups_schedule() == 1


def test_a_paused_step_resumed_beyond_the_limit_skips_the_readers_it_missed(
    clock, settings, sequence, make_subscriber, make_delivery
):
    missed, recent = _reader(make_subscriber), _reader(make_subscriber)
    _sent_report(make_delivery, missed, timezone.now())
    FollowUpStep.objects.filter(pk=sequence.pk).update(is_active=False)
    clock.shift(10 * 86400)
    _sent_report(make_delivery, recent, timezone.now())
    clock.move_to(followup_due(timezone.now(), 2))
    FollowUpStep.objects.filter(pk=sequence.pk).update(is_active=True)
    # missed fell due 10 days ago, more than FOLLOWUP_RESUME_MAX_AGE (7 days) ago.
    assert followups_schedule() == 1
    assert list(_followups().values_list("subscriber", flat=True)) == [recent.pk]
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "FOLLOWUP_RESUME_MAX_AGE": 11 * 86400,
    }
    FollowUpStep.objects.filter(pk=sequence.pk).update(scheduled_through=None)
    assert followups_schedule() == 1  # now within the limit
    assert _followups().count() == 2


def test_two_schedulers_at_once_never_double(clock, sequence, make_subscriber, make_delivery):
    for _ in range(3):
        _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    clock.shift(3 * 86400)
    assert followups_schedule() == 3
    # A second host whose window overlaps the first's (its cursor read before the advance).
    FollowUpStep.objects.filter(pk=sequence.pk).update(scheduled_through=None)
    assert followups_schedule() == 0
    assert _followups().count() == 3
    # Even an insert that skipped the check is refused by the database.
    first = _followups().first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            subscriber=first.subscriber,
            report=first.report,
            edition=1,
            step=sequence,
            kind=Delivery.Kind.FOLLOWUP,
        )


def test_a_step_another_scheduler_holds_is_skipped(
    clock, sequence, make_subscriber, make_delivery, monkeypatch
):
    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    clock.shift(3 * 86400)
    # What SELECT ... FOR UPDATE SKIP LOCKED answers for a locked row: nothing.
    real = FollowUpStep.objects.select_for_update

    def locked(**kwargs):
        assert kwargs == {"skip_locked": True}
        return real(**kwargs).none()

    monkeypatch.setattr(FollowUpStep.objects, "select_for_update", locked)
    assert followups_schedule() == 0
    assert FollowUpStep.objects.get(pk=sequence.pk).scheduled_through is None


def _old_and_due(report, make_subscriber, old: int, due: int, old_sent, due_sent) -> None:
    readers = Subscriber.objects.bulk_create(
        Subscriber(
            email=f"bulk{n}@example.com",
            email_canonical=f"bulk{n}@example.com",
            name="R",
            followups_consented=True,
        )
        for n in range(Subscriber.objects.count(), Subscriber.objects.count() + old + due)
    )
    Delivery.objects.bulk_create(
        Delivery(
            subscriber=reader,
            report=report,
            edition=1,
            status="sent",
            sent_at=old_sent if n < old else due_sent,
        )
        for n, reader in enumerate(readers)
    )


def test_the_schedulers_cost_grows_with_the_readers_due_not_the_list(
    clock, sequence, report, make_subscriber
):
    """1 000 readers whose follow-up is long past the window, 10 due: the pass reads and makes
    the 10, in the same queries as with 10 old readers."""
    start = timezone.now()
    clock.shift(30 * 86400)
    # Noon, local: past the send hour, so a report sent two days ago is due today (at 00:30
    # it would not be yet: the test passed or failed by the time of day it ran).
    noon = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    clock.move_to(noon)
    queries = {}
    for old in (10, 1000):
        FollowUpStep.objects.filter(pk=sequence.pk).update(
            scheduled_through=timezone.now() - 3 * DAY
        )
        _old_and_due(report, make_subscriber, old, 10, start, timezone.now() - 2 * DAY)
        with CaptureQueriesContext(connection) as captured:
            created = followups_schedule()
        assert created == 10
        queries[old] = len(captured)
        clock.shift(86400)
        Delivery.objects.filter(kind=Delivery.Kind.FOLLOWUP).delete()
        Delivery.objects.filter(sent_at__gte=timezone.now() - 5 * DAY).delete()
    assert queries[10] == queries[1000]


def test_every_due_reader_is_made_in_one_statement_whatever_their_number(
    clock, sequence, report, make_subscriber
):
    """10 due readers or 1,500 (more than a batch of the portable way): the same queries, the
    rows made in the database by one ``INSERT ... SELECT``, nothing sent over per reader."""
    clock.move_to(timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0))
    queries = {}
    for due in (10, 1500):
        FollowUpStep.objects.filter(pk=sequence.pk).update(
            scheduled_through=timezone.now() - 3 * DAY
        )
        _old_and_due(report, make_subscriber, 0, due, None, timezone.now() - 2 * DAY)
        with CaptureQueriesContext(connection) as captured:
            assert followups_schedule() == due
        queries[due] = [q["sql"].split()[0] for q in captured]
        Delivery.objects.all().delete()
        clock.shift(86400)
    assert queries[10] == queries[1500]
    assert queries[10].count("INSERT") == 1


@pytest.mark.parametrize("portable", [False, True], ids=["insert-select", "portable"])
def test_a_scheduled_row_is_the_row_the_orm_would_make(
    clock, sequence, report, make_subscriber, make_delivery, monkeypatch, portable
):
    """Each column the one-statement insert writes (defaults, ``auto_now`` stamps, the
    edition) is what ``Delivery.objects.create`` writes; the portable way (databases without
    ``INSERT ... SELECT ... RETURNING``) makes the same rows."""
    if portable:
        monkeypatch.setattr(followups, "INSERT_SELECT_VENDORS", frozenset())
    readers = [_reader(make_subscriber) for _ in range(3)]
    for reader in readers:
        _sent_report(make_delivery, reader, timezone.now())
    sequence.edition = 4
    sequence.save()
    clock.shift(3 * 86400)
    before = timezone.now()
    # One reader's row is already there (another host made it): not counted, not changed.
    made_elsewhere = Delivery.objects.create(
        subscriber=readers[0], report=report, edition=4, step=sequence, kind="followup"
    )
    assert followups_schedule() == 2
    expected = Delivery(
        subscriber=readers[1], report=report, edition=4, step=sequence, kind="followup"
    )
    skip = {"id", "subscriber", "enqueued_at", "created_at", "updated_at"}
    fields = [f.name for f in Delivery._meta.concrete_fields if f.name not in skip]
    for reader in readers[1:]:
        row = _followups().get(subscriber=reader)
        assert {f: getattr(row, f) for f in fields} == {f: getattr(expected, f) for f in fields}
        assert before <= row.created_at == row.updated_at <= timezone.now()
        assert row.enqueued_at is not None  # published after the commit; a lost one: the sweep
    assert _followups().get(subscriber=readers[0]) == made_elsewhere
    assert _followups().count() == 3


def test_a_scheduled_publish_records_only_failures(
    clock, sequence, make_subscriber, make_delivery, monkeypatch, django_capture_on_commit_callbacks
):
    """The rows are stamped ``enqueued_at`` as they are made: a publish that works writes
    nothing more; one the broker refused is marked for the sweep."""
    from backpain_report import broker

    for _ in range(2):
        _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    clock.shift(3 * 86400)
    sent: list = []
    monkeypatch.setattr(broker.current_app, "send_task", lambda name, **kw: sent.append(name))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert followups_schedule() == 2
    with CaptureQueriesContext(connection) as captured:
        for callback in callbacks:
            callback()
    assert sent and not [q for q in captured if q["sql"].startswith("UPDATE")]
    assert not _followups().filter(publish_failed_at__isnull=False).exists()

    def refused(name, **kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", refused)
    _followups().delete()
    FollowUpStep.objects.filter(pk=sequence.pk).update(scheduled_through=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert followups_schedule() == 2
    assert _followups().filter(publish_failed_at__isnull=False).count() == 2


# --- Editions --------------------------------------------------------------------------------


def test_editing_a_step_that_went_out_makes_a_new_edition(sequence, make_subscriber, report):
    sequence.body = "Fixed a typo before anyone got it."
    step_save(sequence)
    assert sequence.edition == 1 and not FollowUpEdition.objects.exists()
    got_it = Delivery.objects.create(
        subscriber=_reader(make_subscriber),
        report=report,
        edition=1,
        step=sequence,
        kind=Delivery.Kind.FOLLOWUP,
        status="sent",
        sent_at=timezone.now(),
    )
    sequence.is_active = True  # not the text: no new edition
    step_save(sequence)
    assert sequence.edition == 1
    sequence.subject, sequence.body = "A better subject", "A new text."
    step_save(sequence)
    sequence.refresh_from_db()
    assert sequence.edition == 2
    [kept] = FollowUpEdition.objects.filter(step=sequence)
    assert (kept.edition, kept.subject, kept.body) == (
        1,
        "How is your back?",
        "Fixed a typo before anyone got it.",
    )
    from backpain_report.delivery.emails import followup_text

    assert followup_text(sequence, got_it.edition) == (kept.subject, kept.body)
    assert followup_text(sequence, 2) == ("A better subject", "A new text.")


# --- The follow-up email ---------------------------------------------------------------------


def _send_one(reader, step, report) -> mail.EmailMultiAlternatives:
    followup = Delivery.objects.create(
        subscriber=reader, report=report, edition=step.edition, step=step, kind="followup"
    )
    assert delivery_send(delivery_id=followup.pk).outcome is Outcome.SENT
    followup.refresh_from_db()
    assert followup.status == "sent" and followup.message_id
    [message] = mail.outbox
    return message


def test_the_followup_email_carries_the_step_the_unsubscribe_link_and_headers(
    sequence, make_subscriber, report, scripted_mail
):
    sequence.subject = "Day 2: using the plan & the diary"
    sequence.body = (
        "## The plan\n\n- Walk **daily**\n\n<script>alert(1)</script>[x](javascript:alert(2))"
    )
    sequence.save()
    reader = _reader(make_subscriber, name="Ann")
    message = _send_one(reader, sequence, report)
    assert message.subject == "Day 2: using the plan & the diary"
    assert message.to == [reader.email]
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert "<h2" in html and "<strong>daily</strong>" in html
    assert "<script" not in html and "javascript:" not in html
    assert "Hello Ann," in message.body and "Walk **daily**" in message.body
    headers = message.message()
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = headers["List-Unsubscribe"].strip("<>")
    assert one_click.startswith("http") and "unsubscribe" in one_click
    assert "/unsubscribe/" in html and "Unsubscribe" in html
    assert "Unsubscribe:" in message.body
    assert "agreed to a few follow-up emails" in message.body


def test_the_followup_email_is_in_the_readers_language(
    report, make_subscriber, scripted_mail, settings
):
    report.followups_enabled = True
    report.save()
    step = FollowUpStep.objects.create(
        report=report, language="de", delay_days=2, subject="Wie geht es Ihrem Rücken?", body="Text"
    )
    message = _send_one(_reader(make_subscriber, name="Anna", language="de"), step, report)
    assert message.subject == "Wie geht es Ihrem Rücken?"
    with translation.override("de"):
        hello = translation.gettext("Unsubscribe:")
    assert hello != "Unsubscribe:" and hello in message.body
    [(html, _)] = message.alternatives
    assert 'lang="de"' in html


def test_the_sent_record_says_which_edition_each_reader_got(
    sequence, make_subscriber, report, scripted_mail
):
    first = _send_one(_reader(make_subscriber), sequence, report)
    sequence.subject = "Edited"
    step_save(sequence)
    mail.outbox.clear()
    second = _send_one(_reader(make_subscriber), sequence, report)
    assert (first.subject, second.subject) == ("How is your back?", "Edited")
    editions = sorted(_followups().values_list("edition", flat=True))
    assert editions == [1, 2]


# --- The development command -----------------------------------------------------------------


def test_the_command_schedules_as_of_a_later_moment_with_debug_on(
    settings, sequence, make_subscriber, make_delivery, capsys
):
    settings.DEBUG = True
    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    call_command("backpain_followups")
    assert "Follow-ups: 0 scheduled." in capsys.readouterr().out
    later = (timezone.now() + 3 * DAY).isoformat()
    call_command("backpain_followups", "--as-of", later)
    assert "Follow-ups: 1 scheduled as of" in capsys.readouterr().out
    # The cursor stays at the real time: a report sent after this is still considered.
    assert FollowUpStep.objects.get(pk=sequence.pk).scheduled_through <= timezone.now()


def test_the_command_refuses_as_of_with_debug_off(settings, sequence):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="development only"):
        call_command("backpain_followups", "--as-of", (timezone.now() + DAY).isoformat())


@pytest.mark.parametrize("value", ["next tuesday", "2030-13-01", ""])
def test_the_command_explains_a_bad_as_of(settings, db, value):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="not an ISO 8601"):
        call_command("backpain_followups", "--as-of", value)


def test_the_sweep_task_schedules_followups(
    clock, sequence, make_subscriber, make_delivery, no_broker
):
    from backpain_report.tasks import schedule_followups, sweep_deliveries

    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    clock.shift(3 * 86400)
    sweep_deliveries()
    assert _followups().count() == 1
    assert schedule_followups() == 0
    assert schedule_followups.name == followups.SCHEDULE_TASK


def test_a_step_the_database_refuses_is_left_to_the_next_pass_the_others_go_on(
    clock, sequence, report, make_subscriber, make_delivery, monkeypatch, caplog
):
    later = FollowUpStep.objects.create(
        report=report, position=2, delay_days=2, subject="Another", body="Text."
    )
    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    clock.shift(3 * 86400)
    real = followups.step_schedule

    def deadlocked(step_id, *, now):
        if step_id == sequence.pk:
            raise OperationalError("deadlock detected")
        return real(step_id, now=now)

    monkeypatch.setattr(followups, "step_schedule", deadlocked)
    assert followups_schedule() == 1
    assert _followups(later).count() == 1 and not _followups(sequence).exists()
    assert FollowUpStep.objects.get(pk=sequence.pk).scheduled_through is None
    assert f"Follow-up step {sequence.pk}: not scheduled this time" in caplog.text
    monkeypatch.setattr(followups, "step_schedule", real)
    assert followups_schedule() == 1  # the next pass makes it
    assert _followups(sequence).count() == 1


def test_the_sweep_re_publishes_lost_messages_whatever_the_scheduler_meets(
    make_subscriber, make_delivery, no_broker, monkeypatch
):
    from backpain_report import tasks

    lost = make_delivery(subscriber=make_subscriber(), publish_failed_at=timezone.now())

    def broken(now=None):
        raise RuntimeError("a bug in the scheduler")

    monkeypatch.setattr(tasks, "followups_schedule", broken)
    with pytest.raises(RuntimeError):
        tasks.sweep_deliveries()
    assert no_broker == [lost.pk]


# --- Settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "check_id"),
    [
        ("FOLLOWUP_SEND_HOUR", 24, "backpain_report.E021"),
        ("FOLLOWUP_SEND_HOUR", -1, "backpain_report.E021"),
        ("FOLLOWUP_RESUME_MAX_AGE", -1, "backpain_report.E022"),
        ("FOLLOWUP_CONSENT_TEXT", "  ", "backpain_report.E023"),
    ],
)
def test_followup_settings_are_checked(settings, key, value, check_id):
    from backpain_report.checks import check_settings

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, key: value}
    assert check_id in {message.id for message in check_settings()}


def test_the_sweep_command_schedules_followups(
    clock, sequence, make_subscriber, make_delivery, no_broker, capsys
):
    _sent_report(make_delivery, _reader(make_subscriber), timezone.now())
    call_command("backpain_sweep")
    assert "Follow-ups" not in capsys.readouterr().out  # a line only when some were due
    clock.shift(3 * 86400)
    call_command("backpain_sweep")
    assert "Follow-ups: 1 scheduled." in capsys.readouterr().out
    assert _followups().count() == 1
