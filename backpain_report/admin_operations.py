"""Writes behind the admin's actions: cancel deliveries, publish articles, edit a report.

Plain functions (no HTTP objects), so a management command or a test can call them too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .models import Article, Delivery, Report

logger = logging.getLogger(__name__)

CANCELLED_BY_STAFF = "Cancelled by staff."

#: Fields whose change alters the PDF, so a new edition is due.
EDITION_FIELDS = frozenset({"title", "subtitle", "author", "body", "template_name"})


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


def articles_publish(articles: QuerySet[Article]) -> int:
    """Publish the draft articles among ``articles`` (first publication date kept if set)."""
    drafts = articles.exclude(status=Article.Status.PUBLISHED)
    now = timezone.now()
    with transaction.atomic():
        drafts.filter(published_at__isnull=True).update(published_at=now)
        return drafts.update(status=Article.Status.PUBLISHED, updated_at=now)


def articles_unpublish(articles: QuerySet[Article]) -> int:
    """Turn the published articles among ``articles`` back into drafts."""
    return articles.filter(status=Article.Status.PUBLISHED).update(
        status=Article.Status.DRAFT, updated_at=timezone.now()
    )


def report_save(*, report: Report, changed_fields: Iterable[str], created: bool = False) -> bool:
    """Save an edited ``report``, bumping its edition when its content changed.

    Returns True when the edition was bumped. Cached PDF bodies of the report are dropped
    (:func:`backpain_report.pdfcache.invalidate`, when that module is installed).
    """
    bumped = not created and bool(EDITION_FIELDS.intersection(changed_fields))
    with transaction.atomic():
        report.save()
        if bumped:  # in the database, so two editors at once make two editions
            Report.objects.filter(pk=report.pk).update(edition=F("edition") + 1)
            report.refresh_from_db(fields=["edition"])
    if bumped:
        _invalidate_pdf_cache(report)
    return bumped


def _invalidate_pdf_cache(report: Report) -> None:
    try:
        from . import pdfcache
    except ImportError:
        return
    invalidate = getattr(pdfcache, "invalidate", None)
    if invalidate is None:
        return
    try:
        invalidate(report)
    except OSError:
        # The new edition has a new cache name anyway: a stale file is only untidy.
        logger.warning("Report %s: could not delete its cached PDFs", report.pk, exc_info=True)
