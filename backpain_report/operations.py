"""Bulk operations shared by the admin actions and the management commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from .models import Delivery, Subscriber
from .publishing import publish_on_commit
from .services import delivery_resend


@dataclass(frozen=True)
class ResendResult:
    queued: int
    skipped: int


def resend_to_subscribers(subscribers: Iterable[Subscriber]) -> ResendResult:
    """A new delivery for each subscribed reader, published in batches; unsubscribed skipped."""
    queued: list[int] = []
    skipped = 0
    with transaction.atomic():
        for subscriber in subscribers:
            delivery = delivery_resend(subscriber=subscriber, publish=False)
            if delivery is None:
                skipped += 1
            else:
                queued.append(delivery.pk)
        publish_on_commit(*queued)
    return ResendResult(queued=len(queued), skipped=skipped)


def retry_failed(deliveries: QuerySet[Delivery]) -> int:
    """Put failed deliveries back to pending with fresh attempts and publish them in batches."""
    with transaction.atomic():
        ids = list(
            deliveries.filter(
                status=Delivery.Status.FAILED, subscriber__unsubscribed_at__isnull=True
            ).values_list("pk", flat=True)
        )
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.FAILED).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=None
        )
        publish_on_commit(*ids)
    return len(ids)
