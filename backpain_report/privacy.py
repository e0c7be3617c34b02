"""Privacy operations: a subscriber's data as JSON, erasure, and purging stale sign-ups."""

from __future__ import annotations

import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import pdfstore
from .models import Delivery, Subscriber

ERASED_DOMAIN = "erased.invalid"


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def subscriber_export(*, subscriber: Subscriber) -> dict[str, Any]:
    """Everything the app holds about one subscriber, ready for ``json.dumps``."""
    return {
        "email": subscriber.email,
        "email_canonical": subscriber.email_canonical,
        "name": subscriber.name,
        "source_article": subscriber.source_article.title if subscriber.source_article else None,
        "source_url": subscriber.source_url,
        "signed_up_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "consent": {
            "text": subscriber.consent_text,
            "version": subscriber.consent_version,
            "given_at": _iso(subscriber.consented_at),
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
        },
        "deliveries": [
            {
                "report": delivery.report.title,
                "edition": delivery.edition,
                "kind": delivery.kind,
                "reason": delivery.reason,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "created_at": _iso(delivery.created_at),
                "sent_at": _iso(delivery.sent_at),
                "message_id": delivery.message_id,
                "last_error": delivery.last_error,
            }
            for delivery in subscriber.deliveries.select_related("report").order_by("created_at")
        ],
    }


def subscriber_erase(*, subscriber: Subscriber) -> None:
    """Anonymise a subscriber: personal data goes, counts for the statistics stay.

    Queued deliveries are cancelled; error texts (which may quote the address) are cleared.
    """
    now = timezone.now()
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk).update(
            email=f"erased-{subscriber.pk}@{ERASED_DOMAIN}",
            email_canonical=f"erased-{subscriber.pk}@{ERASED_DOMAIN}",
            name="",
            source_url="",
            consent_ip="",
            consent_user_agent="",
            unsubscribed_at=subscriber.unsubscribed_at or now,
        )
        deliveries = Delivery.objects.filter(subscriber_id=subscriber.pk)
        deliveries.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING]).update(
            status=Delivery.Status.CANCELLED
        )
        deliveries.update(last_error="", message_id="")
    pdfstore.subscriber_files_delete(subscriber_id=subscriber.pk)  # their stored PDFs hold the name


def unconfirmed_purge(*, older_than_days: int) -> int:
    """Delete sign-ups never confirmed within ``older_than_days``; return how many went."""
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    stale: QuerySet[Subscriber] = Subscriber.objects.filter(
        Q(confirmed_at__isnull=True) & Q(created_at__lt=cutoff)
    )
    count = stale.count()
    stale.delete()
    return count
