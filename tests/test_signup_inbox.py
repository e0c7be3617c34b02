"""The sign-up inbox: the request does the same work for every address; the worker decides.

Documented promise: nobody can learn from the answer *or its timing* whether an address is on the
list. The request validates the form, writes one ``PendingSignup`` row and publishes one
message, whatever the address; everything that depends on the address happens in the worker.
"""

import re

import pytest
import time_machine
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from backpain_report import broker
from backpain_report.delivery import publishing
from backpain_report.delivery.sending import delivery_send
from backpain_report.delivery.sweep import signups_sweep
from backpain_report.models import Delivery, PendingSignup, Subscriber
from backpain_report.services import subscribers
from backpain_report.tasks import process_signup

SIGNUP = {"name": "Ann", "consent": "on"}


@pytest.fixture
def published(monkeypatch):
    """Every message the request publishes, as (task name, args); nothing is processed."""
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(
        broker.current_app,
        "send_task",
        lambda name, args=None, **options: sent.append((name, args)),
    )
    return sent


def _shapes(queries) -> list[str]:
    """The SQL of each query with its values blanked: the work, not the data."""
    blank = re.compile(r"'[^']*'|\b\d+(\.\d+)?\b")
    return [blank.sub("?", q["sql"]) for q in queries]


@pytest.fixture
def known_addresses(make_subscriber, make_delivery):
    """One address of each kind the list can hold."""
    now = timezone.now()
    make_subscriber(email="known@example.com")
    make_subscriber(email="confirmed@example.com", confirmed_at=now)
    make_subscriber(email="gone@example.com", unsubscribed_at=now)
    recent = make_subscriber(email="recent@example.com")
    make_delivery(subscriber=recent, status="sent", sent_at=now)  # within the address window
    make_subscriber(email="bounced@example.com", suppressed_at=now)  # a hard bounce reported
    return [
        "known@example.com", "confirmed@example.com", "gone@example.com", "recent@example.com",
        "bounced@example.com",
    ]  # fmt: skip


def test_every_kind_of_address_costs_the_same_queries_and_one_publish(
    client, article, known_addresses, published, django_capture_on_commit_callbacks
):
    work = {}
    for email in ["new@example.com", *known_addresses]:
        published.clear()
        with (
            django_capture_on_commit_callbacks(execute=True),
            CaptureQueriesContext(connection) as queries,
        ):
            response = client.post(reverse("backpain_report:signup"), {**SIGNUP, "email": email})
        assert response.status_code == 303
        assert [name for name, _args in published] == [publishing.SIGNUP_TASK], email
        work[email] = _shapes(queries.captured_queries)
    first = work["new@example.com"]
    assert len(first) == 2, first  # the article, the INSERT
    for email, shapes in work.items():
        assert shapes == first, email
    assert PendingSignup.objects.count() == 1 + len(known_addresses)
    # Nothing about any address was decided yet.
    assert Subscriber.objects.count() == len(known_addresses)


def test_json_answer_is_the_same_for_every_kind_of_address(
    client, article, known_addresses, published
):
    answers = set()
    for email in ["new@example.com", *known_addresses]:
        response = client.post(
            reverse("backpain_report:signup"),
            {**SIGNUP, "email": email},
            HTTP_ACCEPT="application/json",
        )
        answers.add((response.status_code, response.content))
    assert answers == {(202, b'{"status": "accepted"}')}


def test_a_bots_signup_gets_the_same_answer_after_less_work(
    client, article, published, django_capture_on_commit_callbacks
):
    """Docs, exactly: a filled honeypot is answered alike, without a query or a publish; what
    its timing can tell is that the honeypot was noticed, nothing about the address."""
    answers, work = {}, {}
    for kind, extra in {"reader": {}, "bot": {"website": "http://spam.example"}}.items():
        published.clear()
        with (
            django_capture_on_commit_callbacks(execute=True),
            CaptureQueriesContext(connection) as queries,
        ):
            response = client.post(
                reverse("backpain_report:signup"),
                {**SIGNUP, "email": "known@example.com", **extra},
            )
        work[kind] = (len(queries.captured_queries), len(published))  # before the next request
        json_answer = client.post(
            reverse("backpain_report:signup"),
            {**SIGNUP, "email": "new@example.com", **extra},
            HTTP_ACCEPT="application/json",
        )
        answers[kind] = (response.status_code, response["Location"], json_answer.content)
    assert answers["bot"] == answers["reader"]
    assert work == {"reader": (2, 1), "bot": (0, 0)}
    assert not PendingSignup.objects.filter(email="known@example.com").count() > 1


def _submit(article, email="ann@example.com", name="Ann"):
    with transaction.atomic():
        return subscribers.signup_submit(name=name, email=email, article=article, ip="203.0.113.5")


def test_the_worker_turns_a_new_signup_into_a_subscriber_and_a_sent_report(
    article, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        signup = _submit(article)
    assert published == [(publishing.SIGNUP_TASK, [signup.pk])]
    assert process_signup(signup.pk) == "sent"
    subscriber = Subscriber.objects.get()
    assert subscriber.email_canonical == "ann@example.com"
    assert subscriber.consent_ip.startswith("sha256:")
    assert Delivery.objects.get().status == "sent"
    assert len(mail.outbox) == 1
    assert not PendingSignup.objects.exists()


def test_a_redelivered_signup_message_does_nothing(article, published):
    signup = _submit(article)
    process_signup(signup.pk)
    assert process_signup(signup.pk) == "nothing"
    assert Delivery.objects.count() == 1 and len(mail.outbox) == 1


def test_known_subscriber_gets_nothing_new(article, published, make_subscriber, make_delivery):
    known = make_subscriber(email="ann@example.com")
    make_delivery(subscriber=known, status="sent", sent_at=timezone.now())
    signup = _submit(article)
    assert process_signup(signup.pk) == "nothing"
    assert Subscriber.objects.count() == 1 and Delivery.objects.count() == 1
    assert not mail.outbox


def test_recently_emailed_address_gets_nothing_new_and_the_window_is_in_the_database(
    article, published, make_subscriber, make_delivery, settings
):
    """The per-address limit is decided by the worker from the deliveries it keeps."""
    gone = make_subscriber(email="ann@example.com", unsubscribed_at=timezone.now())
    make_delivery(subscriber=gone, status="sent", sent_at=timezone.now())
    process_signup(_submit(article).pk)
    gone.refresh_from_db()
    assert gone.is_subscribed  # re-subscribed with fresh consent...
    assert Delivery.objects.count() == 1 and not mail.outbox  # ...but not emailed twice an hour
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 0}
    Subscriber.objects.filter(pk=gone.pk).update(unsubscribed_at=timezone.now())
    process_signup(_submit(article).pk)
    assert Delivery.objects.filter(reason="signup_again", status="sent").count() == 1


def test_a_lost_signup_message_is_published_again_by_the_sweep(article, published, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 60}
    signup = _submit(article)  # its on-commit publish never ran: the message was lost
    assert signups_sweep().found == 0  # still within the grace period
    PendingSignup.objects.filter(pk=signup.pk).update(
        enqueued_at=timezone.now() - timezone.timedelta(seconds=61)
    )
    result = signups_sweep()
    assert (result.found, result.published) == (1, 1)
    assert published == [(publishing.SIGNUP_TASK, [signup.pk])]


def test_a_failed_publish_is_recorded_and_swept_at_once(article, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", broker_down)
    signup = _submit(article)
    publishing.publish_signups([signup.pk])
    signup.refresh_from_db()
    assert signup.publish_failed_at is not None
    assert signups_sweep().found == 1


def test_rolled_back_submit_leaves_nothing_and_publishes_nothing(
    article, published, django_capture_on_commit_callbacks
):
    class Boom(Exception):
        pass

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        _submit(article)
        raise Boom
    assert not PendingSignup.objects.exists() and not published


def test_the_sent_delivery_is_not_swept_again(article, published):
    process_signup(_submit(article).pk)
    [delivery] = Delivery.objects.all()
    assert delivery.enqueued_at is not None
    assert delivery_send(delivery_id=delivery.pk).outcome.value == "skipped"


def test_an_article_unpublished_meanwhile_still_sends_the_report_asked_for(article, published):
    signup = _submit(article)
    article.status = "draft"
    article.save()
    assert process_signup(signup.pk) == "sent"
    assert Subscriber.objects.get().source_article == article


def test_staff_see_sign_ups_waiting_for_a_worker_read_only(admin_client, article, published):
    _submit(article, email="waiting@example.com")
    url = reverse("admin:backpain_report_pendingsignup_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200 and "waiting@example.com" in page.content.decode()
    assert admin_client.get(url + "add/").status_code == 403


# --- Hostile review (issue 10): promises the sign-up inbox does not keep -------------------


def test_a_resubscription_inside_the_window_is_sent_the_report_once_the_window_passed(
    article, published, make_subscriber, make_delivery
):
    now = timezone.now()
    reader = make_subscriber(email="ann@example.com", unsubscribed_at=now)
    make_delivery(subscriber=reader, status="sent", sent_at=now)  # the report, minutes ago
    process_signup(_submit(article).pk)  # a new consent, inside the window: nothing yet
    reader.refresh_from_db()
    assert reader.is_subscribed and not mail.outbox
    # Two hours later the reader, still without the report they re-asked for, signs up again.
    with time_machine.travel(timezone.timedelta(hours=2)):
        process_signup(_submit(article).pk)
    assert len(mail.outbox) == 1  # docs: "without double opt-in it goes out again"


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_known_reader_whose_delivery_failed_gets_the_report_on_a_new_signup(
    article, published, make_subscriber, make_delivery, status
):
    reader = make_subscriber(email="ann@example.com")
    old = make_delivery(subscriber=reader, status=status, last_error="SMTP 552: mailbox full")
    Delivery.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=2)
    )
    process_signup(_submit(article).pk)  # docs: nothing only for a reader who *has* it
    assert len(mail.outbox) == 1


def test_a_swept_signup_is_not_published_again_by_the_next_sweep(article, monkeypatch):
    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    signup = _submit(article)
    monkeypatch.setattr(broker.current_app, "send_task", broker_down)
    publishing.publish_signups([signup.pk])  # the request's publish failed
    monkeypatch.setattr(broker.current_app, "send_task", lambda *a, **k: None)
    assert signups_sweep().published == 1  # the broker is back: re-published
    assert signups_sweep().found == 0  # within the grace period: nothing to do
