import pytest
from django.core.management import CommandError, call_command

from backpain_report.models import Delivery


@pytest.fixture(autouse=True)
def _publish(no_broker):
    return no_broker


def test_resend_to_addresses(make_delivery, capsys):
    delivery = make_delivery()
    call_command("backpain_resend", delivery.subscriber.email.upper())
    assert "Queued 1 new deliveries" in capsys.readouterr().out
    assert Delivery.objects.filter(reason="resend").count() == 1


def test_resend_unknown_address_is_an_error(make_delivery):
    with pytest.raises(CommandError, match=r"nobody@example\.com"):
        call_command("backpain_resend", "nobody@example.com")


def test_resend_needs_an_argument(db):
    with pytest.raises(CommandError, match="Give one or more"):
        call_command("backpain_resend")


def test_resend_failed(make_delivery, capsys):
    make_delivery(status=Delivery.Status.FAILED)
    call_command("backpain_resend", "--status", "failed")
    assert "Queued 1 failed deliveries again." in capsys.readouterr().out
    assert Delivery.objects.get().status == "pending"
