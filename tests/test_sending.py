import email
import smtplib
from email import policy

import pytest
from django.core import mail

from backpain_report.delivery.retry import retry_delay
from backpain_report.delivery.sending import Outcome, delivery_send
from backpain_report.models import Delivery
from tests.mail_backends import smtp_configure


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "RETRY_BACKOFF": 1}


def test_sends_the_report_email(make_delivery, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}
    delivery = make_delivery()
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is Outcome.SENT
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert delivery.attempts == 1 and delivery.sent_at and delivery.last_error == ""
    [message] = mail.outbox
    assert message.to == [delivery.subscriber.email]
    assert message.from_email == "Back Pain Reports <reports@example.com>"
    assert message.subject == "Your free back pain report is here"
    assert message.extra_headers["Message-ID"] == delivery.message_id
    assert f"Hello {delivery.subscriber.name}," in message.body
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and delivery.subscriber.name in html
    [(filename, content, attachment_type)] = message.attachments
    assert filename == "back-pain-relief-guide-edition-1.pdf"
    assert attachment_type == "application/pdf"
    assert content.startswith(b"%PDF") and 20_000 < len(content) < 5_000_000


def test_message_has_unsubscribe_link_and_rfc8058_headers(make_delivery):
    delivery = make_delivery()
    delivery_send(delivery_id=delivery.pk)
    parsed = email.message_from_bytes(mail.outbox[0].message().as_bytes(), policy=policy.default)
    unsubscribe = str(parsed["List-Unsubscribe"]).strip()  # Django 5.2 folds it
    assert unsubscribe.startswith("<https://reports.example.com/back-pain/unsubscribe/")
    assert unsubscribe.endswith("/one-click/>")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://reports.example.com/back-pain/unsubscribe/" in mail.outbox[0].body


def test_names_are_escaped_in_the_html_body(make_subscriber, make_delivery):
    subscriber = make_subscriber(name='<script>alert("x")</script>')
    delivery_send(delivery_id=make_delivery(subscriber).pk)
    html = mail.outbox[0].alternatives[0][0]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_sent_delivery_is_never_sent_again(make_delivery):
    delivery = make_delivery()
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED
    assert len(mail.outbox) == 1


def test_a_fresh_claim_is_not_taken_twice(make_delivery):
    delivery = make_delivery()
    from backpain_report.delivery.sending import delivery_claim

    assert delivery_claim(delivery_id=delivery.pk) is not None
    assert delivery_claim(delivery_id=delivery.pk) is None
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED


def test_a_stale_claim_is_reclaimed(make_delivery, settings):
    from django.utils import timezone

    delivery = make_delivery(status=Delivery.Status.SENDING, claimed_at=timezone.now())
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CLAIM_LEASE": 0}
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT


def test_temporary_smtp_error_retries_with_backoff(make_delivery, scripted_mail):
    delivery = make_delivery()
    scripted_mail.append(smtplib.SMTPResponseException(451, b"Try again later"))
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is Outcome.RETRY and 0 < result.retry_in <= 1
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.last_error == "SMTP 451: Try again later"
    assert delivery.next_attempt_at is not None
    # Not due yet: an early duplicate message does nothing.
    delivery.next_attempt_at = delivery.next_attempt_at.replace(year=2100)
    delivery.save()
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED


def test_connection_errors_are_temporary(make_delivery, scripted_mail):
    delivery = make_delivery()
    scripted_mail.extend([ConnectionRefusedError(111, "refused"), TimeoutError("timed out")])
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.status == Delivery.Status.SENT


def test_permanent_smtp_error_fails_at_once(make_delivery, scripted_mail):
    delivery = make_delivery()
    scripted_mail.append(smtplib.SMTPResponseException(550, b"No such user"))
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.FAILED
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1 and delivery.last_error == "SMTP 550: No such user"


def test_gives_up_after_max_attempts(make_delivery, scripted_mail, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "MAX_ATTEMPTS": 2}
    delivery = make_delivery()
    scripted_mail.extend([smtplib.SMTPServerDisconnected("gone")] * 2)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.FAILED
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == "SMTPServerDisconnected: gone"


def test_unsubscribed_reader_is_not_sent(make_subscriber, make_delivery):
    from django.utils import timezone

    delivery = make_delivery(make_subscriber(unsubscribed_at=timezone.now()))
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED and not mail.outbox


def test_retry_delay_grows_exponentially_with_jitter(settings):
    settings.BACKPAIN_REPORT = {"FROM_EMAIL": "a@b.c", "RETRY_BACKOFF": 10, "RETRY_BACKOFF_MAX": 60}
    assert 5 <= retry_delay(1) <= 10
    assert 10 <= retry_delay(2) <= 20
    assert 30 <= retry_delay(10) <= 60


def test_a_batch_reuses_one_connection_and_survives_a_dropped_one(
    make_delivery, scripted_mail, monkeypatch
):
    """Fault: the server drops the connection at the 3rd message of 10. Expected: the other
    nine are sent over the (re)opened connection, the 3rd retries; nobody gets two."""
    from backpain_report.delivery import sending
    from tests.mail_backends import ScriptedBackend

    deliveries = [make_delivery() for _ in range(10)]
    sends = {"n": 0}
    original_send = ScriptedBackend.send_messages

    def send(self, messages):
        sends["n"] += 1
        if sends["n"] == 3:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return original_send(self, messages)

    monkeypatch.setattr(ScriptedBackend, "send_messages", send)
    results = sending.deliveries_send(delivery_ids=[d.pk for d in deliveries])
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.SENT) == 9 and outcomes[2] is Outcome.RETRY
    assert len(mail.outbox) == 9
    assert len({m.to[0] for m in mail.outbox}) == 9
    Delivery.objects.filter(pk=deliveries[2].pk).update(next_attempt_at=None)
    assert delivery_send(delivery_id=deliveries[2].pk).outcome is Outcome.SENT
    assert sorted(m.to[0] for m in mail.outbox) == sorted(d.subscriber.email for d in deliveries)


def test_a_batch_opens_one_smtp_connection(make_delivery, settings):
    """Regression: deliveries_send handed an unopened backend to each send, so Django's SMTP
    backend opened and closed a connection per message (found by the fault tier)."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    from backpain_report.delivery import sending
    from tests.mail_backends import CountingSMTPBackend

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp_configure(
            settings, port=port, timeout=5, backend="tests.mail_backends.CountingSMTPBackend"
        )
        CountingSMTPBackend.connections_opened = 0
        deliveries = [make_delivery() for _ in range(4)]
        results = sending.deliveries_send(delivery_ids=[d.pk for d in deliveries])
    finally:
        controller.stop()
    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    assert CountingSMTPBackend.connections_opened == 1


def _take_over_claim(delivery_id):
    """What another worker's reclaim does to the row: a new claimed_at and one more attempt."""
    import datetime

    from django.db.models import F
    from django.utils import timezone

    later = timezone.now() + datetime.timedelta(seconds=1)
    taken = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(
        claimed_at=later, attempts=F("attempts") + 1
    )
    assert taken == 1


@pytest.fixture
def delivered_signals():
    from backpain_report import signals

    received = []

    def receiver(sender, delivery, **kwargs):
        received.append(delivery.pk)

    signals.report_delivered.connect(receiver)
    yield received
    signals.report_delivered.disconnect(receiver)


def test_a_worker_whose_claim_was_taken_before_sending_sends_nothing(
    make_delivery, monkeypatch, delivered_signals, caplog
):
    """Regression (issue 10, item 3): the claim is re-checked right before the message is handed
    to the mail backend; a run whose claim was taken over meanwhile sends nothing."""
    from backpain_report.delivery import sending

    delivery = make_delivery()
    original_build = sending._build_message

    def build_then_lose_the_claim(delivery, message_id):
        message = original_build(delivery, message_id)
        _take_over_claim(delivery.pk)  # e.g. the render outlasted the lease and another reclaimed
        return message

    monkeypatch.setattr(sending, "_build_message", build_then_lose_the_claim)
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is Outcome.SKIPPED
    assert not mail.outbox and not delivered_signals
    delivery.refresh_from_db()
    # The row belongs to the new claim: this run wrote nothing.
    assert delivery.status == Delivery.Status.SENDING and delivery.attempts == 2
    assert delivery.message_id == "" and delivery.sent_at is None
    [record] = [r for r in caplog.records if r.name == "backpain_report.delivery.sending"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"Delivery {delivery.pk}: the claim no longer stands; nothing recorded"
    )


def test_a_send_whose_claim_was_taken_meanwhile_is_not_reported_sent(
    make_delivery, scripted_mail, monkeypatch, delivered_signals, caplog
):
    """Regression (issue 10, item 3): the claim is lost while the server takes the message (the
    exchange outlasted the lease). The email went out, but the run does not report SENT, sends
    no report_delivered, records nothing and logs a warning naming only the delivery id."""
    from tests.mail_backends import ScriptedBackend

    delivery = make_delivery()
    original_send = ScriptedBackend.send_messages

    def send_while_losing_the_claim(self, messages):
        _take_over_claim(delivery.pk)
        return original_send(self, messages)

    monkeypatch.setattr(ScriptedBackend, "send_messages", send_while_losing_the_claim)
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is Outcome.SKIPPED
    assert len(mail.outbox) == 1 and not delivered_signals
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENDING and delivery.sent_at is None
    [record] = [r for r in caplog.records if r.name == "backpain_report.delivery.sending"]
    assert record.levelname == "WARNING"
    text = record.getMessage()
    assert text == (
        f"Delivery {delivery.pk} was handed to the mail server, but its claim no longer stood; "
        "the outcome is not recorded"
    )
    subscriber = delivery.subscriber
    assert subscriber.email not in text and subscriber.name not in text


def test_a_failure_whose_claim_was_taken_meanwhile_is_not_recorded(
    make_delivery, scripted_mail, monkeypatch
):
    """A run that loses its claim during a failing send leaves the row to the new claim: no
    RETRY (whose re-publish would be pointless) and no error written over the new owner's row."""
    from tests.mail_backends import ScriptedBackend

    delivery = make_delivery()

    def fail_while_losing_the_claim(self, messages):
        _take_over_claim(delivery.pk)
        raise smtplib.SMTPResponseException(451, b"busy")

    monkeypatch.setattr(ScriptedBackend, "send_messages", fail_while_losing_the_claim)
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is Outcome.SKIPPED and result.error == "SMTP 451: busy"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENDING and delivery.last_error == ""


def test_the_message_id_is_stable_per_delivery(make_delivery, scripted_mail, monkeypatch, settings):
    """Regression (issue 10, item 3): a retry of one delivery carries the same Message-ID (so
    clients that de-duplicate by it show one message); another delivery gets another one."""
    import re

    from backpain_report.delivery.emails import delivery_message_id
    from tests.mail_backends import ScriptedBackend

    delivery = make_delivery()
    offered = []
    original_send = ScriptedBackend.send_messages

    def record_then_send(self, messages):
        offered.extend(m.extra_headers["Message-ID"] for m in messages)
        return original_send(self, messages)

    monkeypatch.setattr(ScriptedBackend, "send_messages", record_then_send)
    scripted_mail.append(smtplib.SMTPResponseException(451, b"Try again later"))
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.RETRY
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    delivery.refresh_from_db()
    assert offered == [delivery.message_id, delivery.message_id]
    assert re.fullmatch(rf"<{delivery.pk}\.[0-9a-f]{{16}}@example\.com>", delivery.message_id)
    assert mail.outbox[0].message()["Message-ID"] == delivery.message_id
    # A resend is a new Delivery: a new Message-ID.
    resend = make_delivery(delivery.subscriber, reason=Delivery.Reason.RESEND)
    assert delivery_message_id(resend) != delivery.message_id
    # Keyed with SECRET_KEY: another site with the same sender domain and pk differs.
    settings.SECRET_KEY = "another-site"
    assert delivery_message_id(delivery) != delivery.message_id


def test_a_receiver_that_raises_breaks_no_batch(make_delivery, caplog):
    """A report_delivered receiver that raises is logged; the batch goes on, every delivery is
    sent once and stays SENT (no retry)."""
    from backpain_report import signals
    from backpain_report.delivery import sending

    def broken_receiver(sender, delivery, **kwargs):
        raise RuntimeError("receiver bug")

    signals.report_delivered.connect(broken_receiver)
    try:
        deliveries = [make_delivery() for _ in range(3)]
        results = sending.deliveries_send(delivery_ids=[d.pk for d in deliveries])
    finally:
        signals.report_delivered.disconnect(broken_receiver)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted(d.subscriber.email for d in deliveries)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    errors = [r for r in caplog.records if r.name == "backpain_report.signals"]
    assert len(errors) == 3 and all(r.levelname == "ERROR" for r in errors)
    assert all(isinstance(r.exc_info[1], RuntimeError) for r in errors)


def test_a_stale_claim_without_attempts_left_is_failed_not_reclaimed(make_delivery, settings):
    """Regression (issue 10, item 4): a delivery whose worker dies on every attempt was reclaimed
    forever. A reclaim counts as an attempt; after MAX_ATTEMPTS the row ends failed."""
    import datetime

    from django.utils import timezone

    from backpain_report.delivery.sending import delivery_claim

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "MAX_ATTEMPTS": 3}
    delivery = make_delivery()
    claims = 0
    for _ in range(10):  # each claim's worker "dies": the claim is left to expire
        if delivery_claim(delivery_id=delivery.pk) is None:
            break
        claims += 1
        expired = timezone.now() - datetime.timedelta(hours=1)
        Delivery.objects.filter(pk=delivery.pk).update(claimed_at=expired)
    assert claims == 3
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.attempts == 3
    assert delivery.last_error == (
        "Worker lost while sending (claim expired); giving up after 3 attempts."
    )
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SKIPPED
    assert not mail.outbox


def test_a_stale_claim_with_an_attempt_left_is_reclaimed_and_sent(make_delivery):
    import datetime

    from django.utils import timezone

    expired = timezone.now() - datetime.timedelta(hours=1)
    delivery = make_delivery(status=Delivery.Status.SENDING, claimed_at=expired, attempts=4)
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 5


def test_a_hung_smtp_server_cannot_hold_a_claim_without_a_configured_timeout(
    make_delivery, settings
):
    """Regression (issue 10, item 3): with no mail timeout configured (Django's default), a
    server that accepts the connection and never answers held the worker and the claim forever.
    The adapter gives the SMTP backend a timeout derived from CLAIM_LEASE."""
    import socket
    import time

    # The derived timeout: (66 s lease - 60 s render budget) / 6 SMTP waits = 1 s.
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CLAIM_LEASE": 66}
    with socket.socket() as silent:  # listens (the kernel completes connects), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        smtp_configure(settings, port=port)  # no timeout configured
        delivery = make_delivery()
        started = time.monotonic()
        result = delivery_send(delivery_id=delivery.pk)
        elapsed = time.monotonic() - started
    assert result.outcome is Outcome.RETRY and "timed out" in result.error
    assert elapsed < 30
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING and "timed out" in delivery.last_error


def test_a_reader_who_unsubscribes_during_the_render_is_not_sent_the_report(
    make_delivery, monkeypatch
):
    from backpain_report.delivery import sending
    from backpain_report.services.subscribers import subscriber_unsubscribe

    delivery = make_delivery()
    real_render = sending.delivery_pdf

    def render_while_unsubscribing(claimed):
        subscriber_unsubscribe(subscriber_id=claimed.subscriber_id)  # one-click, mid-render
        return real_render(claimed)

    monkeypatch.setattr(sending, "delivery_pdf", render_while_unsubscribing)
    result = delivery_send(delivery_id=delivery.pk)
    assert mail.outbox == []  # consent was withdrawn before the message was handed over
    assert result.outcome is Outcome.SKIPPED
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED
    assert delivery.last_error == "Unsubscribed before sending." and delivery.sent_at is None
