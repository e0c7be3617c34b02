"""a replayed event counts once (docs, "Bounces and complaints"), also from an
email service that gives no event id (anymail's Brevo, Mailjet, Mandrill: ``event_id=None``)."""

from __future__ import annotations

import datetime

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from backpain_report.models import MailEvent
from tests.test_bounces import anymail_test_backend, post_webhook  # noqa: F401

pytest.importorskip("anymail")
pytestmark = pytest.mark.django_db

BREVO_URL = "/anymail/brevo/tracking/"


def brevo_deferred(recipient: str, when: datetime.datetime) -> dict:
    """Brevo's transactional webhook for a deferred (soft-bounced) message: no event id."""
    return {
        "event": "deferred",
        "email": recipient,
        "id": 123456,  # the webhook's id, the same for every event
        "message-id": "<brevo-message-abcdef@smtp-relay.mailin.fr>",
        "ts_epoch": int(when.timestamp() * 1000),
        "reason": "452 4.2.2 Mailbox full",
        "subject": "Your free report",
    }


def post_brevo(client, body: dict):
    return post_webhook(client, BREVO_URL, body)


@pytest.mark.parametrize("skew", [datetime.timedelta(seconds=5), None], ids=["ahead", "undated"])
@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "SOFT_BOUNCE_LIMIT": (2, 86400)})
def test_a_replayed_soft_bounce_without_an_event_id_counts_once(client, make_subscriber, skew):
    """Brevo's clock 5 s ahead of ours (or a payload without ``ts_epoch``): the same webhook
    delivered twice, 2 s apart, is one soft bounce, not the two that make the limit."""
    reader = make_subscriber(email="ann@example.com")
    start = timezone.now()
    body = brevo_deferred("ann@example.com", start + (skew or datetime.timedelta()))
    if skew is None:
        del body["ts_epoch"]
    with time_machine.travel(start, tick=False):
        assert post_brevo(client, body).status_code == 200
    with time_machine.travel(start + datetime.timedelta(seconds=2), tick=False):
        assert post_brevo(client, body).status_code == 200  # the service sends it again
    reader.refresh_from_db()
    assert MailEvent.objects.filter(subscriber=reader).count() == 1
    assert reader.suppressed_at is None
