"""Webhook endpoints and events: the writes behind the admin's buttons and actions.

Plain functions (no HTTP objects). Recording events in a change's transaction and sending them
are :mod:`backpain_report.webhooks.outbox`'s and :mod:`backpain_report.delivery.webhooks`'.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import WebhookEndpoint, WebhookEvent
from ..webhooks.endpoints import endpoint_secret_rotate, secret_new
from ..webhooks.outbox import events_publish_on_commit, test_event_record

__all__ = [
    "endpoint_secret_rotate",
    "test_event_record",
    "webhook_endpoint_save",
    "webhook_events_retry",
    "webhook_events_retry_skipped",
    "webhook_events_untouched",
]

#: A failed event that cannot be sent again: its endpoint is switched off, or its body was
#: blanked when its subscriber's personal data was erased.
_NOT_RETRYABLE = Q(endpoint__is_active=False) | Q(body="")


def webhook_endpoint_save(endpoint: WebhookEndpoint) -> str | None:
    """Save ``endpoint``; a new one first gets a fresh signing secret, which is returned (to be
    shown once). An existing endpoint keeps its secret (None)."""
    if endpoint.pk is not None:
        endpoint.save()
        return None
    endpoint.secret = secret_new()
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save()
    return endpoint.secret


def webhook_events_retry(events: QuerySet[WebhookEvent]) -> int:
    """Put the failed events among ``events`` back to pending with fresh attempts and publish
    them once the transaction commits; return how many. Events of a switched-off endpoint and
    erased ones (empty body) are left alone (:func:`webhook_events_retry_skipped`)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            events.filter(status=WebhookEvent.Status.FAILED)
            .exclude(_NOT_RETRYABLE)
            .values_list("pk", flat=True)
        )
        WebhookEvent.objects.filter(pk__in=ids, status=WebhookEvent.Status.FAILED).update(
            status=WebhookEvent.Status.PENDING,
            attempts=0,
            next_attempt_at=None,
            claimed_at=None,
            publish_failed_at=None,
            enqueued_at=now,  # the commit publishes; the sweep covers a failed publish
            updated_at=now,
        )
        events_publish_on_commit(ids)
    return len(ids)


def webhook_events_retry_skipped(events: QuerySet[WebhookEvent]) -> int:
    """How many failed events among ``events`` :func:`webhook_events_retry` leaves alone."""
    return events.filter(_NOT_RETRYABLE, status=WebhookEvent.Status.FAILED).count()


#: How long an event may wait for its first attempt before the admin asks whether a worker
#: consumes ``WEBHOOK_QUEUE``.
UNTOUCHED_AFTER = timedelta(minutes=10)


def webhook_events_untouched() -> int:
    """Pending events of active endpoints that have waited over :data:`UNTOUCHED_AFTER` without
    a first attempt: the sign of a worker that does not consume ``WEBHOOK_QUEUE``."""
    return WebhookEvent.objects.filter(
        status=WebhookEvent.Status.PENDING,
        attempts=0,
        endpoint__is_active=True,
        created_at__lt=timezone.now() - UNTOUCHED_AFTER,
    ).count()
