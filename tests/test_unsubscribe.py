import pytest
from django.test import Client
from django.urls import reverse

from backpain_report import signals
from backpain_report.delivery.tokens import make_unsubscribe_token
from backpain_report.models import Delivery


@pytest.fixture
def subscriber(make_subscriber):
    return make_subscriber()


def test_get_shows_a_button_and_changes_nothing(client, subscriber):
    token = make_unsubscribe_token(subscriber.pk)
    response = client.get(reverse("backpain_report:unsubscribe", args=[token]))
    assert response.status_code == 200
    assert "<button" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.unsubscribed_at is None


def test_post_unsubscribes_and_cancels_pending(
    client, subscriber, make_delivery, django_capture_on_commit_callbacks
):
    delivery = make_delivery(subscriber)
    received = []
    signals.subscriber_unsubscribed.connect(lambda **kw: received.append(kw), weak=False)
    token = make_unsubscribe_token(subscriber.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("backpain_report:unsubscribe", args=[token]))
    assert response.status_code == 200
    subscriber.refresh_from_db()
    delivery.refresh_from_db()
    assert subscriber.unsubscribed_at is not None
    assert delivery.status == Delivery.Status.CANCELLED
    assert [kw["subscriber"].pk for kw in received] == [subscriber.pk]


def test_one_click_post_without_cookies_or_csrf(subscriber):
    token = make_unsubscribe_token(subscriber.pk)
    url = reverse("backpain_report:one_click_unsubscribe", args=[token])
    client = Client(enforce_csrf_checks=True)
    for _ in range(2):  # replaying is harmless
        response = client.post(url, {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.unsubscribed_at is not None


def test_tampered_token_is_400_and_changes_nothing(client, subscriber):
    token = make_unsubscribe_token(subscriber.pk) + "x"
    assert client.post(reverse("backpain_report:unsubscribe", args=[token])).status_code == 400
    assert (
        client.post(reverse("backpain_report:one_click_unsubscribe", args=[token])).status_code
        == 400
    )
    subscriber.refresh_from_db()
    assert subscriber.unsubscribed_at is None
