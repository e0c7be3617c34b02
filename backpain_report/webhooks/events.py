"""The webhook events and their JSON payload (schema version 1, documented in the docs'
"Webhook events" reference).

A payload follows the Standard Webhooks shape: ``{"type", "timestamp", "data"}``. ``data``
describes the subscriber (id, email, name, language, source, consent), the article they
signed up on and its report, as they were when the event happened; ``subscriber.erased``
carries the subscriber's id only. The consent's IP is included only with ``HASH_IP`` off (a
keyed hash means nothing to a CRM and is still personal data).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..models import Article, Report, Subscriber
from ..site import site_url

SCHEMA_VERSION = 1


class EventType(models.TextChoices):
    SUBSCRIBER_CREATED = "subscriber.created", _("A reader signed up (or signed up again)")
    SUBSCRIBER_CONFIRMED = "subscriber.confirmed", _("A reader confirmed the address")
    REPORT_DELIVERED = "report.delivered", _("The report email was accepted for delivery")
    SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed", _("A reader unsubscribed")
    SUBSCRIBER_SUPPRESSED = "subscriber.suppressed", _("An address bounced or complained")
    SUBSCRIBER_ERASED = "subscriber.erased", _("A reader's personal data was erased")
    TEST = "test", _("A test event sent from the admin")


#: The events an endpoint can ask for (the test event goes only when staff send it).
SUBSCRIBABLE = [choice for choice in EventType if choice is not EventType.TEST]


def _iso(value: datetime.datetime | None) -> str | None:
    return (
        value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
        if value
        else None
    )


def _article(article: Article | None, subscriber: Subscriber | None) -> dict[str, Any] | None:
    if article is None:
        return None
    base = site_url(subscriber)
    return {
        "id": article.pk,
        "slug": article.slug,
        "title": article.title,
        "url": f"{base}{article.get_absolute_url()}" if base else article.get_absolute_url(),
    }


def _report(report: Report | None, edition: int | None = None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "id": report.pk,
        "slug": report.slug,
        "title": report.title,
        "edition": edition or report.edition,
    }


def _subscriber(subscriber: Subscriber) -> dict[str, Any]:
    consent: dict[str, Any] = {
        "version": subscriber.consent_version,
        "given_at": _iso(subscriber.consented_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
    }
    if not app_settings.HASH_IP:
        consent["ip"] = subscriber.consent_ip
    return {
        "id": subscriber.pk,
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.writing_language(),
        "source": {
            "utm_source": subscriber.utm_source,
            "utm_medium": subscriber.utm_medium,
            "utm_campaign": subscriber.utm_campaign,
            "referrer_host": subscriber.referrer_host,
            "page": subscriber.source_url,
        },
        "consent": consent,
        "subscribed": subscriber.unsubscribed_at is None,
        "suppressed": subscriber.suppressed_at is not None,
    }


def payload_build(
    event_type: str,
    subscriber: Subscriber | None,
    *,
    occurred_at: datetime.datetime,
    subscriber_id: int | None = None,
    report: Report | None = None,
    edition: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload of one event: personal data unless it is ``subscriber.erased``."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if event_type == EventType.SUBSCRIBER_ERASED or subscriber is None:
        data["subscriber"] = {"id": subscriber_id if subscriber is None else subscriber.pk}
    else:
        article = subscriber.source_article if subscriber.source_article_id else None
        data["subscriber"] = _subscriber(subscriber)
        data["article"] = _article(article, subscriber)
        data["report"] = _report(report or (article.report if article else None), edition)
    data.update(extra or {})
    return {"type": str(event_type), "timestamp": _iso(occurred_at), "data": data}


def body_encode(payload: dict[str, Any]) -> str:
    """The JSON body exactly as it is signed and sent (compact, UTF-8, keys in a fixed order)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
