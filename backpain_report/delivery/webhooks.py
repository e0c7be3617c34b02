"""Send one webhook event: claim the row, sign the body, POST it, record the outcome.

The same outbox rules as a report delivery (:mod:`.sending`, :mod:`.retry`): a claim is a
conditional UPDATE, a ``sending`` claim older than ``CLAIM_LEASE`` is taken over as a new
attempt, an outcome is recorded only while the run's claim stands, and the sweep re-publishes
rows whose message was lost. The body and the ``webhook-id`` are the row's, the same on every
attempt; ``webhook-timestamp`` and ``webhook-signature`` are made per attempt (Standard
Webhooks, signed with the ``standardwebhooks`` package).

A 2xx answer is success. A 5xx or 429 answer, a timeout, a connection or DNS error is retried
with the backoff (waiting at least what ``Retry-After`` asks, up to a day) until
``MAX_ATTEMPTS``; any other answer (other 4xx, a redirect, which is never followed) and an
address the SSRF guard refuses are final failures. An endpoint switched off keeps its backlog:
nothing is claimed for it until it is switched on again (the sweep then publishes the rows), but
a test event, which staff send to try a receiver before going live. Events may arrive in any
order. A backlog (the sweep's, staff's retry) goes in batches of one endpoint's events
(:func:`webhooks_send`): one claim, and the delivered ones recorded together.
"""

from __future__ import annotations

import datetime
import http.client
import logging
import time
from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from .. import __version__
from ..conf import app_settings, checked
from ..models import WebhookEndpoint, WebhookEvent
from ..webhooks.endpoints import url_problem
from ..webhooks.events import EventType
from . import webhook_http
from .retry import (
    EARLY_ARRIVAL_SLACK,
    attempt_due,
    retry_delay,
    stale_claim_reclaimable,
)
from .sending import Outcome, stale_claims_fail

logger = logging.getLogger(__name__)

#: The longest a ``Retry-After`` answer delays the next attempt.
RETRY_AFTER_MAX = 24 * 3600.0
CLAIM_GONE = "Webhook event %s was delivered, but its claim no longer stood"
USER_AGENT = f"backpain_report/{__version__} (webhooks)"


@dataclass(frozen=True)
class WebhookResult:
    event_id: int
    outcome: Outcome
    retry_in: float | None = None
    error: str = ""


class _Temporary(Exception):
    """An answer worth retrying (5xx, 429), with the receiver's ``Retry-After``."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class _Final(Exception):
    """An answer or a refusal that no retry would change."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


#: What a call may raise for a delivery failure (recorded, never raised from a send).
_SEND_ERRORS = (
    _Temporary,
    _Final,
    webhook_http.AddressRefused,
    OSError,
    http.client.HTTPException,
    ValueError,
)


def signed_headers(event: WebhookEvent, body: bytes, now: datetime.datetime) -> dict[str, str]:
    """The request headers of one attempt: content type and the Standard Webhooks trio
    (:class:`_Final` if the endpoint's secret is not one: empty, not base64)."""
    try:
        signer = Webhook(event.endpoint.secret)
    except (ValueError, EmptyWebhookSecretError) as exc:
        raise _Final("The endpoint's signing secret is not valid: make a new one.") from exc
    signature = signer.sign(msg_id=event.webhook_id, timestamp=now, data=body)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def _claimable(now: datetime.datetime) -> Q:
    """Pending and due (or a stale claim with attempts left), for an active endpoint; a test
    event also for one switched off (to try a receiver before going live)."""
    due = attempt_due(now, slack=EARLY_ARRIVAL_SLACK)
    active = WebhookEndpoint.objects.filter(pk=OuterRef("endpoint_id"), is_active=True)
    pending = (Q(status=WebhookEvent.Status.PENDING) & due) | stale_claim_reclaimable(now)
    return pending & (Q(Exists(active)) | Q(event_type=EventType.TEST))


def webhook_claim(*, event_id: int) -> WebhookEvent | None:
    """Atomically take an event for sending; None when it is not claimable (another run has it,
    it is done, not due, or its endpoint is switched off). An exhausted stale claim is failed."""
    claimed = webhooks_claim(event_ids=[event_id])
    return claimed[0] if claimed else None


def webhook_stale_claims_fail(queryset: QuerySet[WebhookEvent], *, now: datetime.datetime) -> int:
    """Fail the exhausted stale claims among ``queryset``; return how many."""
    return stale_claims_fail(queryset, now=now, what="webhook events")


def _record(event: WebhookEvent, **fields: object) -> bool:
    """Write the outcome only if our claim still stands."""
    return bool(
        WebhookEvent.objects.filter(
            pk=event.pk, status=WebhookEvent.Status.SENDING, claimed_at=event.claimed_at
        ).update(**fields)
    )


def _call(event: WebhookEvent) -> int:
    """POST the event once; the status of a 2xx answer, else :class:`_Temporary` or
    :class:`_Final` (or an OSError / HTTPException for a network fault: temporary)."""
    problem = url_problem(event.endpoint.url)
    if problem:
        raise _Final(f"The endpoint's URL {problem}")
    body = event.body.encode("utf-8")
    answer = webhook_http.post(
        event.endpoint.url,
        body,
        signed_headers(event, body, timezone.now()),
        connect_timeout=float(checked("WEBHOOK_CONNECT_TIMEOUT")),
        read_timeout=float(checked("WEBHOOK_READ_TIMEOUT")),
        max_bytes=int(checked("WEBHOOK_MAX_RESPONSE_BYTES")),
        allowed=webhook_http.networks_parse(checked("WEBHOOK_ALLOWED_NETWORKS")),
    )
    status = answer.status
    if 200 <= status < 300:
        return status
    said = answer.body[:200].decode("utf-8", "replace").strip()
    message = f"HTTP {status}" + (f": {said}" if said else "")
    if status == 429 or status >= 500:
        raise _Temporary(message, status, answer.retry_after)
    if 300 <= status < 400:
        raise _Final(f"HTTP {status}: redirect to {answer.location!r} not followed", status)
    raise _Final(message, status)


def printable(text: str) -> str:
    """``text`` with control characters (a receiver's NUL, which PostgreSQL refuses in a text
    column; terminal escapes) shown as U+FFFD: it is stored and shown to staff."""
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


def _failure(event: WebhookEvent, exc: BaseException) -> WebhookResult:
    """Record a failed attempt: retry with the backoff (and ``Retry-After``) or give up."""
    status = getattr(exc, "status", None)
    error = f"{exc}" if isinstance(exc, _Temporary | _Final) else f"{type(exc).__name__}: {exc}"
    error = printable(error)[:2000]
    final = isinstance(
        exc, _Final | webhook_http.AddressRefused | ValueError | http.client.InvalidURL
    )
    if final or event.attempts >= int(app_settings.MAX_ATTEMPTS):
        if not _record(
            event, status=WebhookEvent.Status.FAILED, last_error=error, last_status_code=status
        ):
            return WebhookResult(event.pk, Outcome.SKIPPED, error=error)
        logger.warning("Webhook event %s failed: %s", event.pk, error[:200])
        return WebhookResult(event.pk, Outcome.FAILED, error=error)
    delay = retry_delay(event.attempts)
    asked = getattr(exc, "retry_after", None)
    if asked is not None:
        delay = max(delay, min(float(asked), RETRY_AFTER_MAX))
    recorded = _record(
        event,
        status=WebhookEvent.Status.PENDING,
        last_error=error,
        last_status_code=status,
        next_attempt_at=timezone.now() + datetime.timedelta(seconds=delay),
    )
    if not recorded:
        return WebhookResult(event.pk, Outcome.SKIPPED, error=error)
    logger.info("Webhook event %s will retry in %.0f s: %s", event.pk, delay, error[:200])
    return WebhookResult(event.pk, Outcome.RETRY, retry_in=delay, error=error)


def webhook_send(*, event_id: int) -> WebhookResult:
    """Send one event if it can be claimed; never raises for a delivery failure."""
    event = webhook_claim(event_id=event_id)
    if event is None:
        return WebhookResult(event_id, Outcome.SKIPPED)
    try:
        status = _call(event)
    except _SEND_ERRORS as exc:
        return _failure(event, exc)
    recorded = _record(
        event,
        status=WebhookEvent.Status.SENT,
        sent_at=timezone.now(),
        last_error="",
        last_status_code=status,
    )
    if not recorded:
        logger.warning(CLAIM_GONE, event.pk)
        return WebhookResult(event.pk, Outcome.SKIPPED)
    return WebhookResult(event.pk, Outcome.SENT)


def webhooks_claim(*, event_ids: list[int]) -> list[WebhookEvent]:
    """Atomically take the claimable among ``event_ids`` with one claim time (one UPDATE);
    return them in id order. Exhausted stale claims among the rest are failed."""
    now = timezone.now()
    WebhookEvent.objects.filter(_claimable(now), pk__in=event_ids).update(
        status=WebhookEvent.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
    )
    ours = WebhookEvent.objects.filter(
        pk__in=event_ids, status=WebhookEvent.Status.SENDING, claimed_at=now
    )
    claimed = list(ours.select_related("endpoint").order_by("pk"))
    rest = set(event_ids) - {event.pk for event in claimed}
    if rest:
        webhook_stale_claims_fail(WebhookEvent.objects.filter(pk__in=rest), now=now)
    return claimed


def _claims_renew(events: list[WebhookEvent]) -> list[WebhookEvent]:
    """Restart the lease of ``events`` (claimed together); return those whose claim stood."""
    if not events:
        return []
    now, before = timezone.now(), events[0].claimed_at
    held = WebhookEvent.objects.filter(
        pk__in=[event.pk for event in events],
        status=WebhookEvent.Status.SENDING,
        claimed_at=before,
    )
    still = set(held.values_list("pk", flat=True))
    WebhookEvent.objects.filter(pk__in=still, claimed_at=before).update(claimed_at=now)
    for event in events:
        event.claimed_at = now
    return [event for event in events if event.pk in still]


def _delivered_record(delivered: list[tuple[WebhookEvent, int]]) -> list[WebhookResult]:
    """Record the delivered events of a batch, one UPDATE per answer status, each only while its
    claim stands; their results (SKIPPED for a claim that no longer stood)."""
    if not delivered:
        return []
    now = timezone.now()
    claimed_at = delivered[0][0].claimed_at
    by_status: dict[int, list[int]] = {}
    for event, status in delivered:
        by_status.setdefault(status, []).append(event.pk)
    for status, ids in by_status.items():
        WebhookEvent.objects.filter(
            pk__in=ids, status=WebhookEvent.Status.SENDING, claimed_at=claimed_at
        ).update(
            status=WebhookEvent.Status.SENT, sent_at=now, last_error="", last_status_code=status
        )
    recorded = set(
        WebhookEvent.objects.filter(
            pk__in=[event.pk for event, _status in delivered],
            status=WebhookEvent.Status.SENT,
            sent_at=now,
        ).values_list("pk", flat=True)
    )
    results = []
    for event, _status in delivered:
        if event.pk in recorded:
            results.append(WebhookResult(event.pk, Outcome.SENT))
        else:
            logger.warning(
                "Webhook event %s was delivered, but its claim no longer stood", event.pk
            )
            results.append(WebhookResult(event.pk, Outcome.SKIPPED))
    return results


#: How long a batch goes on with what it last read of its waiting events and their endpoint:
#: before a call, a batch that read them longer ago reads them again (one query).
BATCH_RECHECK_SECONDS = 0.25


def _batch_current(events: list[WebhookEvent]) -> tuple[list[WebhookEvent], list[int]]:
    """``events`` (claimed together) read again with their endpoints: those the batch still
    holds, fresh (a rotated secret, a new URL apply), and the ids of those it no longer sends.

    Gone are events whose claim no longer stands (cancelled by an erasure, taken over, deleted
    with their endpoint); an event whose endpoint was switched off goes back to the backlog, its
    attempt not counted.
    """
    if not events:
        return [], []
    claimed_at = events[0].claimed_at
    held = WebhookEvent.objects.select_related("endpoint").filter(
        pk__in=[event.pk for event in events],
        status=WebhookEvent.Status.SENDING,
        claimed_at=claimed_at,
    )
    fresh = {event.pk: event for event in held}
    off = [
        pk
        for pk, event in fresh.items()
        if not event.endpoint.is_active and event.event_type != EventType.TEST
    ]
    if off:
        WebhookEvent.objects.filter(
            pk__in=off, status=WebhookEvent.Status.SENDING, claimed_at=claimed_at
        ).update(status=WebhookEvent.Status.PENDING, attempts=F("attempts") - 1, claimed_at=None)
    kept = [fresh[event.pk] for event in events if event.pk in fresh and event.pk not in off]
    kept_ids = {event.pk for event in kept}
    return kept, [event.pk for event in events if event.pk not in kept_ids]


def webhooks_send(*, event_ids: list[int]) -> list[WebhookResult]:
    """Send a batch of events (one endpoint's backlog) with one claim; never raises for a
    delivery failure.

    Each event is POSTed in turn; a failure is recorded at once (:func:`_failure`), the
    delivered ones together at the end. Before each call, a batch whose claim is older than half
    the lease renews it, so no other run takes over an event still waiting its turn. Before a
    call, a batch that read its waiting events more than ``BATCH_RECHECK_SECONDS`` ago reads them
    again with their endpoint (:func:`_batch_current`, one query): so before every call once
    calls take that long, and at least that often while they are quicker. A change made while
    the batch runs (an erasure, a switch-off, a deleted endpoint, a rotated secret, a new URL)
    therefore reaches the events still waiting within ``BATCH_RECHECK_SECONDS`` plus the call
    under way. A worker
    lost mid-batch leaves the delivered but unrecorded ones to be sent again, with the same
    ``webhook-id`` (at least once).
    """
    events = webhooks_claim(event_ids=event_ids)
    claimed = {event.pk for event in events}
    results = [WebhookResult(pk, Outcome.SKIPPED) for pk in event_ids if pk not in claimed]
    delivered: list[tuple[WebhookEvent, int]] = []
    half_lease = float(app_settings.CLAIM_LEASE) / 2
    renewed = read = time.monotonic()
    waiting = list(events)
    while waiting:
        if time.monotonic() - renewed > half_lease:
            results += _delivered_record(delivered)
            delivered = []
            kept = _claims_renew(waiting)
            dropped = {event.pk for event in waiting} - {event.pk for event in kept}
            results += [WebhookResult(pk, Outcome.SKIPPED) for pk in sorted(dropped)]
            waiting, renewed = kept, time.monotonic()
        if waiting and time.monotonic() - read >= BATCH_RECHECK_SECONDS:
            waiting, gone = _batch_current(waiting)
            results += [WebhookResult(pk, Outcome.SKIPPED) for pk in gone]
            read = time.monotonic()
        if not waiting:
            break
        event = waiting.pop(0)
        try:
            delivered.append((event, _call(event)))
        except _SEND_ERRORS as exc:
            results.append(_failure(event, exc))
    return results + _delivered_record(delivered)
