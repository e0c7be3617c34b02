"""Bounces and complaints from anymail's tracking webhooks (the optional ``[anymail]`` extra).

:func:`tracking_received` listens to ``anymail.signals.tracking`` (connected in
``AppConfig.ready`` only when django-anymail is installed) and hands what matters to
:func:`backpain_report.rights.suppression.mail_event_record`: a hard bounce, a complaint or a reject
suppresses the address; a soft bounce counts towards ``SOFT_BOUNCE_LIMIT``. Every other event
(sent, delivered, opened...) is ignored.

What is hard and what is soft, per anymail's normalised ``event_type``: ``bounced`` is hard,
``deferred`` soft (Mailgun's temporary failures arrive as ``deferred``); Amazon SES reports
every bounce as ``bounced``, so there its ``bounceType`` decides: only ``Permanent`` is hard.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from django.utils import timezone

from ..models import MailEvent
from .suppression import MailEventResult, mail_event_record

AMAZON_SES = "Amazon SES"


def event_kind(event: Any, esp_name: str) -> str | None:
    """The :class:`~backpain_report.models.MailEvent` kind of an anymail tracking event, or
    None for an event that says nothing about the address (sent, delivered, opened...)."""
    event_type = str(getattr(event, "event_type", "") or "")
    if event_type == "bounced":
        if esp_name == AMAZON_SES and _ses_bounce_type(event) != "Permanent":
            return MailEvent.Kind.SOFT_BOUNCE  # Transient or Undetermined
        return MailEvent.Kind.HARD_BOUNCE
    return {
        "deferred": MailEvent.Kind.SOFT_BOUNCE,
        "complained": MailEvent.Kind.COMPLAINT,
        "rejected": MailEvent.Kind.REJECTED,
    }.get(event_type)


def _ses_bounce_type(event: Any) -> str:
    esp_event = getattr(event, "esp_event", None)
    bounce = esp_event.get("bounce") if isinstance(esp_event, dict) else None
    return str(bounce.get("bounceType", "")) if isinstance(bounce, dict) else ""


def _message_ids(event: Any, esp_name: str) -> list[str]:
    """Message-IDs that may be ours: the event's, and for Amazon SES the original header
    (SES's own ``messageId`` is not the one we wrote)."""
    ids = [str(event.message_id)] if getattr(event, "message_id", None) else []
    esp_event = getattr(event, "esp_event", None)
    if esp_name == AMAZON_SES and isinstance(esp_event, dict):
        headers = (esp_event.get("mail") or {}).get("commonHeaders") or {}
        if isinstance(headers, dict) and isinstance(headers.get("messageId"), str):
            ids.append(headers["messageId"])
    return ids


def _occurred_at(event: Any) -> datetime.datetime | None:
    when = getattr(event, "timestamp", None)
    if not isinstance(when, datetime.datetime):
        return None
    return when if timezone.is_aware(when) else timezone.make_aware(when, datetime.timezone.utc)


def _payload_id(event: Any) -> str:
    """A stand-in event id for a service that gives none (Brevo, Mailjet, Mandrill): the
    digest of the payload it posted, the same when it posts it again."""
    esp_event = getattr(event, "esp_event", None)
    if not isinstance(esp_event, (dict, list)):
        return ""
    payload = json.dumps(esp_event, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def tracking_received(sender: Any, event: Any, esp_name: str = "", **kwargs: Any) -> None:
    """Receiver for ``anymail.signals.tracking``."""
    tracking_event_record(event=event, esp_name=esp_name)


def tracking_event_record(*, event: Any, esp_name: str) -> MailEventResult | None:
    """Record one anymail tracking event; None when its type is not one we act on."""
    kind = event_kind(event, esp_name)
    if kind is None:
        return None
    description = getattr(event, "description", None) or getattr(event, "mta_response", None)
    return mail_event_record(
        esp=esp_name or "unknown",
        event_id=str(getattr(event, "event_id", None) or "") or _payload_id(event),
        kind=kind,
        recipient=str(getattr(event, "recipient", None) or ""),
        message_ids=_message_ids(event, esp_name),
        occurred_at=_occurred_at(event),
        description=str(description or ""),
    )


def connect() -> bool:
    """Connect :func:`tracking_received` to anymail's ``tracking`` signal; False without
    django-anymail installed."""
    try:
        from anymail.signals import tracking
    except ImportError:
        return False
    tracking.connect(tracking_received, dispatch_uid="backpain_report.bounces")
    return True
