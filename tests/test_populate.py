import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from backpain_report.models import Delivery, PageView, Subscriber


def test_populate_command(article, capsys):
    call_command("backpain_populate", "--subscribers", "250", "--batch-size", "100", "--seed", "1")
    out = capsys.readouterr().out
    assert "Populated 250 subscribers" in out and "deliveries:  250" in out
    assert Subscriber.objects.count() == 250 and Delivery.objects.count() == 250
    assert Subscriber.objects.values("email_canonical").distinct().count() == 250
    statuses = set(Delivery.objects.values_list("status", flat=True))
    assert {"sent", "failed", "pending"} <= statuses
    assert Subscriber.objects.filter(confirmed_at__isnull=False).count() > 150
    assert PageView.objects.aggregate(n=Sum("views"))["n"] >= 250 * 12
    first = Subscriber.objects.order_by("pk").first()
    last = Subscriber.objects.order_by("pk").last()
    assert first.created_at < last.created_at  # ids grow with time, as in a real table
    sent = Delivery.objects.filter(status="sent").first()
    assert sent.sent_at > sent.created_at and sent.message_id


def test_populate_twice_adds_more(article):
    call_command("backpain_populate", "--subscribers", "20")
    call_command("backpain_populate", "--subscribers", "20")
    assert Subscriber.objects.count() == 40


def test_populate_refuses_nonsense(db):
    with pytest.raises(CommandError):
        call_command("backpain_populate", "--subscribers", "0")
