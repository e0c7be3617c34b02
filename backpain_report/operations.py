"""Bulk operations shared by the admin actions and the management commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from .models import Delivery, Subscriber
from .publishing import publish_on_commit
from .services import delivery_resend


@dataclass(frozen=True)
class ResendResult:
    queued: int
    skipped: int


def resend_to_subscribers(subscribers: Iterable[Subscriber]) -> ResendResult:
    """A new delivery for each subscribed reader; unsubscribed ones are skipped."""
    queued = skipped = 0
    for subscriber in subscribers:
        if delivery_resend(subscriber=subscriber) is None:
            skipped += 1
        else:
            queued += 1
    return ResendResult(queued=queued, skipped=skipped)


def retry_failed(deliveries: Iterable[Delivery]) -> int:
    """Put failed deliveries back to pending with fresh attempts and publish them."""
    count = 0
    with transaction.atomic():
        for delivery in deliveries:
            updated = Delivery.objects.filter(
                pk=delivery.pk,
                status=Delivery.Status.FAILED,
                subscriber__unsubscribed_at__isnull=True,
            ).update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=None)
            if updated:
                publish_on_commit(delivery.pk)
                count += 1
    return count
