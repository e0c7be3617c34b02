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
