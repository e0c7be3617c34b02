"""Write webhook events into the outbox, in the transaction of the change they report.

:func:`events_record` adds one :class:`~backpain_report.models.WebhookEvent` row per active
endpoint that asked for the event (and, if it names an article, only for that article's
readers) and publishes them once the transaction commits: a rollback leaves no event, a commit
always leaves one, whatever the broker does (the sweep publishes what the commit could not).
Nothing here talks HTTP: a sign-up's request never waits for a CRM.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..broker import rows_publish
from ..conf import checked
from ..models import Report, Subscriber, WebhookEndpoint, WebhookEvent
from .events import EventType, body_encode, payload_build

WEBHOOK_TASK = "backpain_report.deliver_webhook"
WEBHOOK_BATCH_TASK = "backpain_report.deliver_webhook_batch"
#: Events per batch message, all of one endpoint (so a slow endpoint holds up only its own):
#: one claim and one record for those delivered, instead of two writes each.
BATCH_SIZE = 50

#: What an erased subscriber's events keep of their body.
ERASED_BODY = ""
ERASED_ERROR = "Cancelled: the subscriber's personal data was erased."


def webhook_id_new() -> str:
    """A fresh ``webhook-id``: ``msg_`` and 128 random bits (unique, unguessable)."""
    return f"msg_{secrets.token_urlsafe(16)}"


def endpoints_for(
    event_type: str, article_id: int | None, *, any_article: bool = False
) -> list[WebhookEndpoint]:
    """The active endpoints that want ``event_type`` for a reader of ``article_id`` (of any
    article with ``any_article``)."""
    return [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(is_active=True).order_by("pk")
        if endpoint.wants(event_type)
        and (any_article or endpoint.article_id is None or endpoint.article_id == article_id)
    ]


def events_record(
    event_type: str,
    subscriber: Subscriber | None,
    *,
    subscriber_id: int | None = None,
    article_id: int | None = None,
    report: Report | None = None,
    edition: int | None = None,
    occurred_at: datetime.datetime | None = None,
) -> list[int]:
    """Queue ``event_type`` about ``subscriber`` for every endpoint that wants it; return the
    new rows' ids. Call it inside the transaction that makes the change."""
    if subscriber is not None:
        subscriber_id, article_id = subscriber.pk, subscriber.source_article_id
    endpoints = endpoints_for(event_type, article_id)
    if not endpoints:
        return []
    occurred_at = occurred_at or timezone.now()
    payload = payload_build(
        event_type,
        subscriber,
        occurred_at=occurred_at,
        subscriber_id=subscriber_id,
        report=report,
        edition=edition,
    )
    body, personal = body_encode(payload), event_type != EventType.SUBSCRIBER_ERASED
    return _rows_save(
        [_row(each, event_type, body, subscriber_id, personal, occurred_at) for each in endpoints]
    )


def events_record_by_id(event_type: str, subscriber_id: int) -> list[int]:
    """:func:`events_record` for a subscriber known by id, read only if an endpoint wants the
    event (a site without endpoints pays one query)."""
    if not any(event_type in types.split() for types in _active_event_types()):
        return []
    subscriber = Subscriber.objects.select_related("source_article__report").get(pk=subscriber_id)
    return events_record(event_type, subscriber)


def erasures_record(subscribers: Mapping[int, int | None]) -> list[int]:
    """For each erased subscriber (id: their article's id): cancel what their events still had
    to send and blank their personal data (:func:`events_erase`), then queue
    ``subscriber.erased``; in the erasure's transaction, a few queries however many."""
    if not subscribers:
        return []
    events_erase(list(subscribers))
    wanted = endpoints_for(EventType.SUBSCRIBER_ERASED, None, any_article=True)
    if not wanted:
        return []
    now = timezone.now()
    rows: list[WebhookEvent] = []
    for subscriber_id, article_id in subscribers.items():
        body = body_encode(
            payload_build(
                EventType.SUBSCRIBER_ERASED, None, occurred_at=now, subscriber_id=subscriber_id
            )
        )
        rows += [
            _row(endpoint, EventType.SUBSCRIBER_ERASED, body, subscriber_id, False, now)
            for endpoint in wanted
            if endpoint.article_id is None or endpoint.article_id == article_id
        ]
    return _rows_save(rows)


def _active_event_types() -> list[str]:
    return list(
        WebhookEndpoint.objects.filter(is_active=True).values_list("event_types", flat=True)
    )


def _row(
    endpoint: WebhookEndpoint,
    event_type: str,
    body: str,
    subscriber_id: int | None,
    personal: bool,
    occurred_at: datetime.datetime,
) -> WebhookEvent:
    return WebhookEvent(
        endpoint=endpoint,
        event_type=event_type,
        webhook_id=webhook_id_new(),
        body=body,
        subscriber_ref=subscriber_id,
        personal=personal,
        occurred_at=occurred_at,
        enqueued_at=timezone.now(),  # the commit publishes; the sweep covers a failed publish
    )


def _rows_save(rows: list[WebhookEvent]) -> list[int]:
    """Insert ``rows`` and publish them once the transaction commits; return their ids."""
    if not rows:
        return []
    saved = WebhookEvent.objects.bulk_create(rows)
    ids = [row.pk for row in saved]
    if None in ids:  # a backend that returns no ids from bulk_create
        webhook_ids = [row.webhook_id for row in rows]
        ids = list(
            WebhookEvent.objects.filter(webhook_id__in=webhook_ids).values_list("pk", flat=True)
        )
    events_publish_on_commit(ids)
    return ids


def test_event_record(endpoint: WebhookEndpoint) -> int:
    """Queue a ``test`` event for ``endpoint`` (active or not); return its id."""
    now = timezone.now()
    body = body_encode(
        {
            "type": EventType.TEST.value,
            "timestamp": now.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "data": {"schema_version": 1, "endpoint": endpoint.name},
        }
    )
    with transaction.atomic():
        (pk,) = _rows_save([_row(endpoint, EventType.TEST, body, None, False, now)])
    return pk


def events_publish(event_ids: Iterable[int], *, countdown: float | None = None) -> int:
    """Publish one ``deliver_webhook`` message per event to ``WEBHOOK_QUEUE``; return how many
    went (failures are recorded on the rows for the sweep, never raised)."""
    messages: list[tuple[str, list[Any], list[int]]] = [
        (WEBHOOK_TASK, [pk], [pk]) for pk in event_ids
    ]
    if not messages:
        return 0
    queue = checked("WEBHOOK_QUEUE") or None
    return rows_publish(messages, countdown, WebhookEvent, queue=queue)


def events_publish_batches(event_ids: Iterable[int]) -> int:
    """Publish a backlog (the sweep's, staff's retry) in batch messages of up to
    ``BATCH_SIZE`` events of one endpoint each; a lone event goes as a ``deliver_webhook``
    message. Returns how many events were published."""
    by_endpoint: dict[int, list[int]] = {}
    rows = WebhookEvent.objects.filter(pk__in=list(event_ids)).order_by("pk")
    for pk, endpoint_id in rows.values_list("pk", "endpoint_id"):
        by_endpoint.setdefault(endpoint_id, []).append(pk)
    messages: list[tuple[str, list[Any], list[int]]] = []
    for ids in by_endpoint.values():
        for start in range(0, len(ids), BATCH_SIZE):
            batch = ids[start : start + BATCH_SIZE]
            task, args = (WEBHOOK_TASK, batch) if len(batch) == 1 else (WEBHOOK_BATCH_TASK, [batch])
            messages.append((task, args, batch))
    if not messages:
        return 0
    return rows_publish(messages, None, WebhookEvent, queue=checked("WEBHOOK_QUEUE") or None)


def events_publish_on_commit(event_ids: list[int]) -> None:
    """Publish once the current transaction commits (nothing if it rolls back): one message per
    event, or batches of one endpoint's events for a backlog (:func:`events_publish_batches`)."""
    if event_ids:
        transaction.on_commit(lambda: events_publish_batches(event_ids), robust=True)


def events_erase(subscriber_ids: list[int]) -> int:
    """Cancel the subscriber's events not yet delivered and blank the bodies of all that carry
    personal data (call it in the erasure's transaction); return how many were cancelled.

    An event being sent right now (``sending``) is cancelled too: its worker records nothing
    and never retries it, but the request already on the wire cannot be called back.
    """
    events = WebhookEvent.objects.filter(subscriber_ref__in=subscriber_ids, personal=True)
    now = timezone.now()
    cancelled = events.filter(
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.SENDING]
    ).update(
        status=WebhookEvent.Status.CANCELLED,
        last_error=ERASED_ERROR,
        next_attempt_at=None,
        updated_at=now,
    )
    events.update(body=ERASED_BODY, updated_at=now)
    return cancelled
