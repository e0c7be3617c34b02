import datetime

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from backpain_report import publishing
from backpain_report.models import Delivery
from backpain_report.sweep import deliveries_sweep


@pytest.fixture
def published(monkeypatch):
    sent = []

    def fake_send_task(name, args=None, **kwargs):
        sent.append((name, args[0]))

    monkeypatch.setattr(publishing.current_app, "send_task", fake_send_task)
    return sent


def ago(seconds):
    return timezone.now() - datetime.timedelta(seconds=seconds)


def test_picks_up_what_was_lost_and_nothing_else(make_delivery, published):
    failed_publish = make_delivery(publish_failed_at=timezone.now())
    old_pending = make_delivery(enqueued_at=ago(600))
    make_delivery(enqueued_at=ago(1))  # fresh: its message is on the way
    make_delivery(status=Delivery.Status.SENT, enqueued_at=ago(600))
    stale_claim = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600))
    make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(5))
    make_delivery(
        enqueued_at=ago(600), next_attempt_at=timezone.now() + datetime.timedelta(hours=1)
    )

    result = deliveries_sweep()

    expected = {failed_publish.pk, old_pending.pk, stale_claim.pk}
    # One batch message: the worker sends them over one SMTP connection.
    assert published == [("backpain_report.deliver_batch", sorted(expected))]
    assert (result.found, result.published) == (3, 3)
    # Stamped as enqueued: an immediate second sweep finds nothing.
    assert deliveries_sweep().found == 0
    assert not Delivery.objects.filter(pk__in=expected, publish_failed_at__isnull=False).exists()


def test_broker_down_is_recorded_and_reported(make_delivery, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(publishing.current_app, "send_task", broken)
    delivery = make_delivery(publish_failed_at=ago(5))
    with pytest.raises(CommandError, match="could not be published"):
        call_command("backpain_sweep")
    assert "1 stranded deliveries found, 0 re-enqueued" in capsys.readouterr().out
    delivery.refresh_from_db()
    assert delivery.publish_failed_at > ago(5)


def test_command_prints_a_summary(make_delivery, published, capsys):
    make_delivery(publish_failed_at=timezone.now())
    call_command("backpain_sweep")
    assert "1 stranded deliveries found, 1 re-enqueued" in capsys.readouterr().out
    assert published[0][0] == "backpain_report.deliver_report"


def test_a_stale_claim_without_attempts_left_is_failed_not_republished(
    make_delivery, published, settings, capsys
):
    """Regression (issue 10, item 4): the sweep re-published a stale claim forever, whatever its
    attempts. One that used the last of MAX_ATTEMPTS ends failed with a clear error."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "MAX_ATTEMPTS": 5}
    lost_for_good = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600), attempts=5)
    one_left = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600), attempts=4)
    running = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(5), attempts=5)

    result = deliveries_sweep()

    assert published == [("backpain_report.deliver_report", one_left.pk)]
    assert (result.found, result.published, result.given_up) == (1, 1, 1)
    lost_for_good.refresh_from_db()
    assert lost_for_good.status == Delivery.Status.FAILED
    assert lost_for_good.last_error == (
        "Worker lost while sending (claim expired); giving up after 5 attempts."
    )
    running.refresh_from_db()
    assert running.status == Delivery.Status.SENDING and running.last_error == ""
    # Nothing left to give up on; the command says what it did.
    Delivery.objects.filter(pk=one_left.pk).update(claimed_at=ago(3600), attempts=9)
    call_command("backpain_sweep")
    assert "1 deliveries failed: their worker was lost on the last attempt." in (
        capsys.readouterr().out
    )
    assert deliveries_sweep().given_up == 0
