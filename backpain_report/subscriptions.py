"""Withdrawing consent."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import Delivery, Subscriber


def subscriber_unsubscribe(*, subscriber_id: int) -> bool:
    """Unsubscribe and cancel anything still queued; True if this call changed anything.

    Replaying it (a second click, a mail client retrying) is harmless.
    """
    with transaction.atomic():
        changed = Subscriber.objects.filter(pk=subscriber_id, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now()
        )
        if changed:
            Delivery.objects.filter(
                subscriber_id=subscriber_id, status=Delivery.Status.PENDING
            ).update(status=Delivery.Status.CANCELLED, last_error="Unsubscribed before sending.")
            transaction.on_commit(lambda: _announce_unsubscribe(subscriber_id), robust=True)
    return bool(changed)


def _announce_unsubscribe(subscriber_id: int) -> None:
    """Send ``subscriber_unsubscribed`` (reading the row only when someone listens)."""
    if signals.subscriber_unsubscribed.has_listeners(Subscriber):
        subscriber = Subscriber.objects.get(pk=subscriber_id)
        signals.send_robustly(
            signals.subscriber_unsubscribed, sender=Subscriber, subscriber=subscriber
        )
