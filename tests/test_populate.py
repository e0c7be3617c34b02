import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from backpain_report.delivery.sweep import deliveries_sweep
from backpain_report.models import Delivery, PageView, Subscriber

NOT_PRODUCTION = "--i-know-this-is-not-production"


def populate(*args: str) -> None:
    call_command("backpain_populate", *args, NOT_PRODUCTION)


def test_populate_command(article, capsys):
    populate("--subscribers", "250", "--batch-size", "100", "--seed", "1")
    out = capsys.readouterr().out
    assert "Populated 250 subscribers" in out and "deliveries:  250" in out
    assert Subscriber.objects.count() == 250 and Delivery.objects.count() == 250
    assert Subscriber.objects.values("email_canonical").distinct().count() == 250
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert statuses == {"sent", "failed", "cancelled"}  # final states only
    assert Subscriber.objects.filter(confirmed_at__isnull=False).count() > 150
    assert PageView.objects.aggregate(n=Sum("views"))["n"] >= 250 * 12
    first = Subscriber.objects.order_by("pk").first()
    last = Subscriber.objects.order_by("pk").last()
    assert first.created_at < last.created_at  # ids grow with time, as in a real table
    sent = Delivery.objects.filter(status="sent").first()
    assert sent.sent_at > sent.created_at and sent.message_id


def test_populated_rows_give_the_sweep_nothing_to_send(article, no_broker):
    """Pending or sending rows would be really mailed to the made-up addresses."""
    populate("--subscribers", "2000", "--seed", "2")
    assert not Delivery.objects.filter(status__in=["pending", "sending"]).exists()
    assert deliveries_sweep().found == 0
    assert no_broker == []


def test_populate_twice_adds_more(article):
    populate("--subscribers", "20")
    populate("--subscribers", "20")
    assert Subscriber.objects.count() == 40


def test_populate_refuses_nonsense(db):
    with pytest.raises(CommandError):
        populate("--subscribers", "0")


def test_populate_refuses_to_run_with_debug_off_unless_told(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--i-know-this-is-not-production"):
        call_command("backpain_populate", "--subscribers", "5")
    assert not Subscriber.objects.exists()
    settings.DEBUG = True
    call_command("backpain_populate", "--subscribers", "5")
    assert Subscriber.objects.count() == 5
