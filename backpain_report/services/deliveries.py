"""Deliveries (the outbox): resends, retrying failed ones, cancelling, download links.

Plain functions (no HTTP objects) behind the admin actions, the commands and the views. Sending
a delivery is :mod:`backpain_report.delivery.sending`'s; creating one for a sign-up is
:mod:`backpain_report.services.subscribers`'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .. import selectors
from ..delivery.publishing import publish_on_commit
from ..models import Delivery, Report, Subscriber
from ..rights.consent import awaiting_confirmation_q, awaits_confirmation


def delivery_resend(
    *, subscriber: Subscriber, report: Report | None = None, publish: bool = True
) -> Delivery | None:
    """Queue a fresh copy of the report for a subscriber (a staff action); None if unsubscribed,
    suppressed, or (under double opt-in) asked to confirm and not yet confirmed.

    With ``publish=False`` the caller publishes (e.g. many deliveries in batches).
    """
    if not subscriber.is_subscribed or subscriber.is_suppressed:
        return None
    if awaits_confirmation(subscriber):
        return None
    report = report or selectors.report_for_subscriber(subscriber=subscriber)
    if report is None:
        return None
    with transaction.atomic():
        delivery = Delivery.objects.create(
            subscriber=subscriber,
            report=report,
            edition=report.edition,
            reason=Delivery.Reason.RESEND,
        )
        if publish:
            publish_on_commit(delivery.pk)
    return delivery


CANCELLED_BY_STAFF = "Cancelled by staff."


@dataclass(frozen=True)
class ResendResult:
    queued: int
    skipped: int  # unsubscribed
    suppressed: int = 0  # their address bounced or complained: nothing is sent to it
    unconfirmed: int = 0  # double opt-in: asked to confirm, not confirmed; only a request goes


def deliveries_resend(subscribers: Iterable[Subscriber]) -> ResendResult:
    """A new delivery for each subscribed reader, published in batches; unsubscribed,
    suppressed and (under double opt-in) unconfirmed readers are skipped (counted apart)."""
    queued: list[int] = []
    skipped = suppressed = unconfirmed = 0
    with transaction.atomic():
        for subscriber in subscribers:
            if subscriber.is_suppressed and subscriber.is_subscribed:
                suppressed += 1
                continue
            if awaits_confirmation(subscriber) and subscriber.is_subscribed:
                unconfirmed += 1
                continue
            delivery = delivery_resend(subscriber=subscriber, publish=False)
            if delivery is None:
                skipped += 1
            else:
                queued.append(delivery.pk)
        publish_on_commit(*queued)
    return ResendResult(
        queued=len(queued), skipped=skipped, suppressed=suppressed, unconfirmed=unconfirmed
    )


def _retryable(deliveries: QuerySet[Delivery]) -> QuerySet[Delivery]:
    """Failed deliveries of readers still subscribed and not suppressed."""
    return deliveries.filter(
        status=Delivery.Status.FAILED,
        subscriber__unsubscribed_at__isnull=True,
        subscriber__suppressed_at__isnull=True,
    )


#: A report whose reader (double opt-in) was asked to confirm and has not.
_HELD_FOR_CONFIRMATION = Q(kind=Delivery.Kind.REPORT)


def deliveries_retry_failed(deliveries: QuerySet[Delivery]) -> int:
    """Put failed deliveries back to pending with fresh attempts and publish them in batches;
    return how many.

    Not those of unsubscribed or suppressed readers, nor (under double opt-in) the reports of
    readers who have not confirmed (see :func:`deliveries_held_for_confirmation`): a failed
    confirmation request may be retried, their report not.
    """
    held = _HELD_FOR_CONFIRMATION & awaiting_confirmation_q("subscriber__")
    with transaction.atomic():
        ids = list(_retryable(deliveries).exclude(held).values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids, status=Delivery.Status.FAILED).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=None
        )
        publish_on_commit(*ids)
    return len(ids)


@dataclass(frozen=True)
class RetrySkipped:
    """The failed deliveries :func:`deliveries_retry_failed` leaves alone, by reason."""

    unsubscribed: int = 0
    suppressed: int = 0  # their address bounced or complained: lift the suppression first
    unconfirmed: int = 0  # double opt-in: reports of readers who have not confirmed

    @property
    def total(self) -> int:
        return self.unsubscribed + self.suppressed + self.unconfirmed


def deliveries_retry_skipped(deliveries: QuerySet[Delivery]) -> RetrySkipped:
    """How many failed deliveries among ``deliveries`` retrying leaves alone, and why."""
    failed = deliveries.filter(status=Delivery.Status.FAILED)
    held = _HELD_FOR_CONFIRMATION & awaiting_confirmation_q("subscriber__")
    return RetrySkipped(
        unsubscribed=failed.filter(subscriber__unsubscribed_at__isnull=False).count(),
        suppressed=failed.filter(
            subscriber__unsubscribed_at__isnull=True, subscriber__suppressed_at__isnull=False
        ).count(),
        unconfirmed=_retryable(deliveries).filter(held).count(),
    )


def deliveries_cancel_pending(deliveries: QuerySet[Delivery]) -> int:
    """Cancel the pending deliveries among ``deliveries``; return how many were cancelled.

    Only ``pending`` rows change: one being sent (``sending``) is left to finish. The worker
    claims a delivery with a conditional UPDATE on ``pending``, so a cancelled row is never
    sent, even if its message is already on the broker.
    """
    return deliveries.filter(status=Delivery.Status.PENDING).update(
        status=Delivery.Status.CANCELLED,
        last_error=CANCELLED_BY_STAFF,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )


def delivery_downloaded(*, delivery: Delivery) -> None:
    """Record the first download of a delivery's PDF (later ones change nothing)."""
    Delivery.objects.filter(pk=delivery.pk, downloaded_at__isnull=True).update(
        downloaded_at=timezone.now()
    )


def deliveries_links_revoke(deliveries: QuerySet[Delivery]) -> int:
    """Make every download link sent so far for these deliveries stop working."""
    return deliveries.update(link_version=F("link_version") + 1)
