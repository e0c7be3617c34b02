"""Suppressed addresses: what the site's email service reported as undeliverable or unwanted.

A hard bounce, a complaint (the reader marked the email as spam) or a reject suppresses the
subscriber's address at once; soft bounces (temporary failures) only once ``SOFT_BOUNCE_LIMIT`` of
them arrived within its window. Nothing is sent to a suppressed address again: pending deliveries
are cancelled here, the worker refuses to send (:mod:`backpain_report.delivery.sending`), and
sign-ups and resends create nothing to send (:mod:`backpain_report.services.subscribers`), each with
:func:`suppressed_error` as the reason, until staff lift the suppression.

Events arrive through anymail's tracking webhooks (:mod:`backpain_report.rights.bounces` translates
them); this module knows nothing about anymail. Each event is stored once per
``(esp, event_id)``, so a replayed webhook changes nothing.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..conf import DEFAULTS, app_settings
from ..models import Delivery, MailEvent, Subscriber
from ..webhooks.events import EventType
from ..webhooks.outbox import events_record_by_id
from .addresses import canonical_email
from .throttling import limit_parse

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

#: The first words of a delivery's ``last_error`` when it was not sent because of a suppression.
SUPPRESSED_PREFIX = "Not sent: the address is suppressed"


@dataclass(frozen=True)
class MailEventResult:
    """What one reported event did: ``recorded`` is False for an unknown address or a replay."""

    recorded: bool
    suppressed: bool = False
    subscriber_id: int | None = None


def suppressed_error(reason: str) -> str:
    """The ``last_error`` of a delivery not sent because its address is suppressed."""
    return f"{SUPPRESSED_PREFIX} ({reason or 'no reason given'}); lift it in the admin to send."[
        :2000
    ]


def subscriber_suppress(*, subscriber_id: int, reason: str) -> bool:
    """Suppress an address and cancel what is still queued for it; True if this call did.

    An address already suppressed keeps its first reason and time (replays change nothing).
    """
    reason = reason[:300]
    with transaction.atomic():
        changed = Subscriber.objects.filter(pk=subscriber_id, suppressed_at__isnull=True).update(
            suppressed_at=timezone.now(), suppressed_reason=reason
        )
        if changed:
            Delivery.objects.filter(
                subscriber_id=subscriber_id, status=Delivery.Status.PENDING
            ).update(
                status=Delivery.Status.CANCELLED,
                last_error=suppressed_error(reason),
                next_attempt_at=None,
                updated_at=timezone.now(),
            )
            events_record_by_id(EventType.SUBSCRIBER_SUPPRESSED, subscriber_id)
    if changed:
        logger.info("Subscriber %s suppressed", subscriber_id)
    return bool(changed)


def subscribers_unsuppress(subscribers: QuerySet[Subscriber]) -> int:
    """Lift the suppression of the suppressed among ``subscribers``; return how many.

    Soft bounces before the lift no longer count towards ``SOFT_BOUNCE_LIMIT``. Nothing is
    re-sent by this: a resend or a new sign-up sends again.
    """
    return subscribers.filter(suppressed_at__isnull=False).update(
        suppressed_at=None, suppressed_reason="", suppression_lifted_at=timezone.now()
    )


def message_id_bracketed(message_id: str) -> str:
    """``message_id`` as our deliveries store it, ``<id@domain>``: services report it with or
    without the angle brackets (SES's ``commonHeaders.messageId`` as the header was written,
    Mailgun's ``message-id`` without), sometimes with spaces around; "" for an empty one."""
    core = message_id.strip()
    if core.startswith("<") and core.endswith(">"):
        core = core[1:-1].strip()
    return f"<{core}>" if core else ""


def _subscriber_for(
    recipient: str, message_ids: list[str]
) -> tuple[Subscriber | None, Delivery | None]:
    """The subscriber an event is about, by its recipient's canonical address, else by the
    Message-ID of one of our deliveries; and that delivery when the Message-ID is ours."""
    subscriber = None
    if recipient:
        try:
            canonical = canonical_email(recipient)
        except ValidationError:
            canonical = ""
        if canonical:
            subscriber = Subscriber.objects.filter(email_canonical=canonical).first()
    ids = [bracketed for bracketed in map(message_id_bracketed, message_ids) if bracketed]
    deliveries = Delivery.objects.filter(message_id__in=ids) if ids else Delivery.objects.none()
    if subscriber is not None:
        deliveries = deliveries.filter(subscriber=subscriber)
    delivery = deliveries.select_related("subscriber").order_by("-pk").first()
    if subscriber is None and delivery is not None:
        subscriber = delivery.subscriber
    return subscriber, delivery


def event_time(
    reported: datetime.datetime | None, received: datetime.datetime
) -> datetime.datetime:
    """When an event counts as having happened: the email service's own time, but never later
    than its arrival (a skewed clock or a forged date cannot move an event into the future)."""
    if reported is None or reported > received:
        return received
    try:
        return reported.astimezone(datetime.timezone.utc)
    except OverflowError:  # before 0001-01-01 UTC (year 1 with a positive offset)
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def _soft_bounces_reach_limit(subscriber: Subscriber, now: datetime.datetime) -> int:
    """How many soft bounces lie within the window that ends ``now``, if they reach
    ``SOFT_BOUNCE_LIMIT``; else 0.

    Each soft bounce counts at its :func:`event_time`, so webhooks arriving out of order are
    counted alike, one dated long ago is already outside the window, and one dated in the
    future counts from its arrival, never longer. Only the soft bounces received since staff
    last lifted a suppression count. A misshapen setting (check E013) falls back to the default.
    """
    count, seconds = limit_parse(app_settings.SOFT_BOUNCE_LIMIT) or DEFAULTS["SOFT_BOUNCE_LIMIT"]
    try:
        since = now - datetime.timedelta(seconds=seconds)
    except OverflowError:  # a window longer than the calendar: every soft bounce is in it
        since = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    events = MailEvent.objects.filter(
        subscriber=subscriber,
        kind=MailEvent.Kind.SOFT_BOUNCE,
        occurred_at__gt=since,
        occurred_at__lte=now,
    )
    if subscriber.suppression_lifted_at:
        events = events.filter(received_at__gt=subscriber.suppression_lifted_at)
    counted = events.count()
    return counted if counted >= count else 0


def _plain(text: str) -> str:
    """``text`` without control characters: the services' texts quote remote mail servers, and
    a NUL would make PostgreSQL refuse the row (a 500 the service retries for days)."""
    return _CONTROL.sub("", text)


def _reason(kind: str, esp: str, description: str, soft_count: int = 0) -> str:
    label = str(MailEvent.Kind(kind).label)
    if soft_count:
        label = f"{soft_count} soft bounces"
    text = f"{label} ({esp})"
    return f"{text}: {description}" if description else text


def mail_event_record(
    *,
    esp: str,
    event_id: str,
    kind: str,
    recipient: str,
    message_ids: list[str] | None = None,
    occurred_at: datetime.datetime | None = None,
    description: str = "",
) -> MailEventResult:
    """Record one bounce, complaint or reject and suppress the address when it is due.

    Hard bounces, complaints and rejects suppress at once; a soft bounce only when it makes
    ``SOFT_BOUNCE_LIMIT``. An address that is no subscriber's is ignored (logged without the
    address); an event already recorded (same ``esp`` and ``event_id``) changes nothing.
    """
    esp, event_id, recipient = _plain(esp), _plain(event_id), _plain(recipient)
    message_ids = [_plain(i) for i in message_ids or []]
    subscriber, delivery = _subscriber_for(recipient, message_ids)
    if subscriber is None:
        logger.info("%s %s event for an address that is no subscriber's: ignored", esp, kind)
        return MailEventResult(recorded=False)
    now = timezone.now()
    # An id-less event's stand-in id comes from what the service reported, never from when it
    # arrived: a replay (also of an event dated ahead of this clock) is the same event.
    if not event_id and occurred_at is not None:
        event_id = f"{kind}:{subscriber.pk}:{occurred_at.isoformat()}"
    occurred_at = event_time(occurred_at, now)
    description = " ".join(_plain(description).split())[:300]
    event_id = event_id or f"{kind}:{subscriber.pk}:{occurred_at.isoformat()}"
    with transaction.atomic():
        # One event of an address at a time: a soft bounce reported at the same moment is
        # committed, and so counted, before this one counts (else neither sees the other).
        subscriber = Subscriber.objects.select_for_update().filter(pk=subscriber.pk).first()
        if subscriber is None:  # deleted meanwhile
            return MailEventResult(recorded=False)
        try:
            with transaction.atomic():
                MailEvent.objects.create(
                    subscriber=subscriber,
                    delivery=delivery,
                    esp=esp[:40],
                    event_id=event_id[:255],
                    kind=kind,
                    occurred_at=occurred_at,
                    description=description,
                )
        except IntegrityError:
            logger.info("%s event %s for subscriber %s: a replay", esp, kind, subscriber.pk)
            return MailEventResult(recorded=False, subscriber_id=subscriber.pk)
        soft_count = 0
        if kind == MailEvent.Kind.SOFT_BOUNCE:
            # The clock read after the lock: a soft bounce committed while this one waited
            # for it is inside the window too.
            soft_count = _soft_bounces_reach_limit(subscriber, timezone.now())
            if not soft_count:
                return MailEventResult(recorded=True, subscriber_id=subscriber.pk)
        suppressed = subscriber_suppress(
            subscriber_id=subscriber.pk, reason=_reason(kind, esp, description, soft_count)
        )
    return MailEventResult(recorded=True, suppressed=suppressed, subscriber_id=subscriber.pk)
