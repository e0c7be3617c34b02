"""The sweep: find deliveries and sign-ups whose message was lost and publish them again.

Pending sign-ups (the inbox rows the web request writes) are re-published when their publish
failed, or when they have waited longer than ``SWEEP_GRACE`` since they were last enqueued (and
at least as long as they had waited before that, or ``RETRY_BACKOFF_MAX``: see
:func:`_waited_long_enough`).

Three kinds are picked up: pending deliveries whose publish failed (at once), other pending
deliveries that are due and have waited as long (counted from the last publish, or for a retry
from when it fell due), and ``sending`` claims older than ``CLAIM_LEASE`` (their worker died)
with attempts left. A stale claim that used the last of ``MAX_ATTEMPTS`` is not re-published:
the sweep marks it failed ("Worker lost while sending ..."), as a claim would (the lease, the
attempt limit and "due" are :mod:`backpain_report.delivery.retry`'s). Several hosts may sweep at
once: rows are taken with ``SELECT ... FOR UPDATE SKIP LOCKED`` and stamped ``enqueued_at`` before
publishing, so each is re-published by one sweeper; a duplicate message would be harmless
anyway, because sending claims the row.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from ..conf import app_settings
from ..models import Delivery, PendingSignup, WebhookEvent
from ..webhooks.events import EventType
from ..webhooks.outbox import events_publish_batches
from .publishing import publish_batches, publish_signups
from .retry import attempt_due, stale_claim_reclaimable
from .sending import stale_claims_fail
from .webhooks import webhook_stale_claims_fail

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    found: int
    published: int
    given_up: int = 0  # stale claims failed because their attempts were used up

    @property
    def failed(self) -> int:
        return self.found - self.published


def _waited_long_enough(now: datetime.datetime) -> Q:
    """A row (annotated ``last_seen`` and ``wait_start``) whose message may be lost: it has
    waited ``SWEEP_GRACE`` since it was last published, and at least as long as it had already
    waited when it was, or else ``RETRY_BACKOFF_MAX``.

    The second half spaces the re-publishes of a row that is merely queued behind a long backlog
    at doubling intervals (after the grace, then as long again as it has waited): a burst that
    outlasts ``SWEEP_GRACE`` costs each row a few duplicate messages, not one per grace period,
    which would lengthen the very queue it waits in. The doubling stops at ``RETRY_BACKOFF_MAX``
    (the longest a pending row otherwise waits for its next chance): a message that is really
    lost is re-published at the latest that long after it was last published (``SWEEP_GRACE``,
    if that is longer), however long the row had waited before (a backlog of days, a broker
    away for days, a failed delivery staff retried months after it was created).
    """
    grace = float(app_settings.SWEEP_GRACE)
    cap = max(grace, float(app_settings.RETRY_BACKOFF_MAX))
    waited_before = ExpressionWrapper(
        F("last_seen") - F("wait_start"), output_field=DurationField()
    )
    doubled = ExpressionWrapper(
        Value(now, output_field=DateTimeField()) - waited_before, output_field=DateTimeField()
    )
    try:
        capped = Q(last_seen__lte=now - datetime.timedelta(seconds=cap))
    except (OverflowError, ValueError):  # a RETRY_BACKOFF_MAX past the calendar: no cap
        capped = Q(pk__in=[])
    return Q(last_seen__lt=now - datetime.timedelta(seconds=grace)) & (
        Q(last_seen__lte=doubled) | capped
    )


def _stranded(now: datetime.datetime) -> Q:
    """A pending row due and waiting too long for its message, or a reclaimable stale claim."""
    grace = now - datetime.timedelta(seconds=float(app_settings.SWEEP_GRACE))
    due = attempt_due(now)
    publish_failed = Q(publish_failed_at__isnull=False)
    pending = Q(status=Delivery.Status.PENDING) & due & (publish_failed | _waited_long_enough(now))
    stale_claim = stale_claim_reclaimable(now) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=grace)
    )
    return pending | stale_claim


def _take(rows: QuerySet, limit: int, **stamp: object) -> list[int]:
    """Up to ``limit`` of ``rows`` (oldest first) that no other sweeper holds, stamped with
    ``stamp`` in the same transaction so each is re-published by one sweeper only."""
    with transaction.atomic():
        rows = rows.order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        ids = list(rows.values_list("pk", flat=True)[:limit])
        rows.model.objects.filter(pk__in=ids).update(**stamp)
    return ids


def _last_seen_annotated(rows: QuerySet) -> QuerySet:
    """``rows`` (deliveries or webhook events) annotated for :func:`_waited_long_enough`."""
    return rows.annotate(
        # A retry is published with a countdown: its message is due at next_attempt_at, not
        # when it was enqueued, so the grace counts from the later of the two (else the sweep
        # would send a second message the moment each retry fell due).
        last_seen=Greatest(
            Coalesce("enqueued_at", "next_attempt_at", "created_at"),
            Coalesce("next_attempt_at", "enqueued_at", "created_at"),  # (never NULL: SQLite)
        ),
        wait_start=Coalesce("next_attempt_at", "created_at"),  # when its attempt became due
    )


def deliveries_sweep(*, limit: int = 1000) -> SweepResult:
    """Re-publish up to ``limit`` stranded deliveries; return how many were found and published.

    Stale claims without attempts left are failed instead, in one conditional UPDATE (safe on
    several hosts at once: a row already failed no longer matches).
    """
    now = timezone.now()
    given_up = stale_claims_fail(Delivery.objects.all(), now=now)
    rows = _last_seen_annotated(Delivery.objects.all()).filter(_stranded(now))
    ids = _take(rows, limit, enqueued_at=now)
    published = publish_batches(ids) if ids else 0
    return SweepResult(found=len(ids), published=published, given_up=given_up)


def webhook_events_sweep(*, limit: int = 1000) -> SweepResult:
    """Re-publish up to ``limit`` stranded webhook events of active endpoints (the same rules
    as :func:`deliveries_sweep`); an exhausted stale claim is failed instead."""
    now = timezone.now()
    given_up = webhook_stale_claims_fail(WebhookEvent.objects.all(), now=now)
    sendable = Q(endpoint__is_active=True) | Q(event_type=EventType.TEST)
    rows = _last_seen_annotated(WebhookEvent.objects.filter(sendable))
    ids = _take(rows.filter(_stranded(now)), limit, enqueued_at=now)
    published = events_publish_batches(ids) if ids else 0
    return SweepResult(found=len(ids), published=published, given_up=given_up)


def signups_sweep(*, limit: int = 1000) -> SweepResult:
    """Re-publish up to ``limit`` pending sign-ups whose message failed or was lost."""
    now = timezone.now()
    rows = PendingSignup.objects.annotate(
        last_seen=Coalesce("enqueued_at", "created_at"), wait_start=F("created_at")
    ).filter(Q(publish_failed_at__isnull=False) | _waited_long_enough(now))
    # A failed publish is retried now; if it fails again, the publish records it again.
    ids = _take(rows, limit, enqueued_at=now, publish_failed_at=None)
    published = publish_signups(ids) if ids else 0
    return SweepResult(found=len(ids), published=published)


def sweep_log(
    signups: SweepResult, deliveries: SweepResult, webhooks: SweepResult | None = None
) -> None:
    """One INFO line when a sweep found lost messages, none when it found none: an idle worker's
    log stays quiet. (A failed publish and a stale claim failed log their own warnings.)"""
    if signups.found or deliveries.found:
        logger.info(
            "Sweep: re-published %d of %d sign-ups and %d of %d deliveries whose message was lost.",
            signups.published,
            signups.found,
            deliveries.published,
            deliveries.found,
        )
    if webhooks is not None and webhooks.found:
        logger.info(
            "Sweep: re-published %d of %d webhook events whose message was lost.",
            webhooks.published,
            webhooks.found,
        )
