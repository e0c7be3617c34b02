import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from backpain_report.models import Delivery, Subscriber
from backpain_report.privacy import subscriber_erase, subscriber_export


def test_export_holds_the_consent_record_and_deliveries(make_delivery):
    delivery = make_delivery(last_error="SMTP 451")
    data = subscriber_export(subscriber=delivery.subscriber)
    assert data["email"] == delivery.subscriber.email
    assert set(data["consent"]) == {"text", "version", "given_at", "ip", "user_agent"}
    assert data["deliveries"][0]["last_error"] == "SMTP 451"
    json.dumps(data)


def test_erase_removes_personal_data_and_cancels_queued(make_delivery):
    delivery = make_delivery(last_error="550 ann@example.com unknown")
    subscriber = delivery.subscriber
    subscriber_erase(subscriber=subscriber)
    subscriber.refresh_from_db()
    delivery.refresh_from_db()
    assert subscriber.name == "" and "erased" in subscriber.email
    assert subscriber.consent_ip == "" and subscriber.consent_user_agent == ""
    assert delivery.status == Delivery.Status.CANCELLED and delivery.last_error == ""


def test_admin_export_and_erase_actions(admin_client, make_delivery):
    subscriber = make_delivery().subscriber
    url = reverse("admin:backpain_report_subscriber_changelist")
    response = admin_client.post(
        url, {"action": "export_data", "_selected_action": [subscriber.pk]}
    )
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)[0]["email"] == subscriber.email
    admin_client.post(url, {"action": "erase_data", "_selected_action": [subscriber.pk]})
    subscriber.refresh_from_db()
    assert subscriber.name == ""


def test_privacy_command(make_subscriber, capsys):
    subscriber = make_subscriber(email="ann@example.com")
    call_command("backpain_privacy", "export", "ANN@example.com")
    assert json.loads(capsys.readouterr().out)["email"] == "ann@example.com"
    call_command("backpain_privacy", "erase", "ann@example.com")
    assert "Erased subscriber" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No subscriber"):
        call_command("backpain_privacy", "export", "ann@example.com")
    with pytest.raises(CommandError, match="Not an email address"):
        call_command("backpain_privacy", "export", "a@\udcff")
    subscriber.refresh_from_db()


def test_purge_unconfirmed(make_subscriber, capsys):
    old = make_subscriber()
    Subscriber.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=40)
    )
    make_subscriber()  # recent
    confirmed = make_subscriber(confirmed_at=timezone.now())
    Subscriber.objects.filter(pk=confirmed.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=40)
    )
    call_command("backpain_privacy", "purge-unconfirmed", "--days", "30")
    assert "Deleted 1 unconfirmed" in capsys.readouterr().out
    assert Subscriber.objects.count() == 2
