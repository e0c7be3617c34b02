"""Content: the reports and articles staff edit (a report's edition), publishing, the seed."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .. import seed
from ..models import Article, FollowUpStep, Report
from ..page import pagecache
from .followups import step_save

logger = logging.getLogger(__name__)


#: Fields whose change alters the PDF, so a new edition is due.
EDITION_FIELDS = frozenset({"title", "subtitle", "author", "body", "template_name"})


def report_save(*, report: Report, changed_fields: Iterable[str], created: bool = False) -> bool:
    """Save an edited ``report``, bumping its edition when its content changed.

    Returns True when the edition was bumped; the report's cached PDF bodies are then dropped
    (a new edition has a new cache name anyway: this only keeps the storage tidy).
    """
    bumped = not created and bool(EDITION_FIELDS.intersection(changed_fields))
    with transaction.atomic():
        if report._state.adding:
            report.save()
        else:  # every field but the edition: a stale copy would write its old number back
            fields = [
                f.name
                for f in Report._meta.concrete_fields
                if not f.primary_key and f.name != "edition"
            ]
            report.save(update_fields=fields)
        if bumped:  # in the database, so two editors at once make two editions
            Report.objects.filter(pk=report.pk).update(edition=F("edition") + 1)
        report.refresh_from_db(fields=["edition"])
    if bumped:
        from ..report import pdfcache  # WeasyPrint is heavy: import it only when needed

        try:
            pdfcache.invalidate(report)
        except OSError:
            logger.warning("Report %s: could not delete its cached PDFs", report.pk, exc_info=True)
    return bumped


def content_seed(*, overwrite: bool = False) -> tuple[Article, Report]:
    """Create the bundled article and report, or restore their text when ``overwrite``."""
    report_fields = seed.report_fields()
    article_fields = seed.article_fields()
    with transaction.atomic():
        report, report_created = Report.objects.get_or_create(
            slug=seed.REPORT_SLUG, defaults=report_fields
        )
        if overwrite and not report_created:
            changed = [f for f, value in report_fields.items() if getattr(report, f) != value]
            for field, value in report_fields.items():
                setattr(report, field, value)
            report_save(report=report, changed_fields=changed)
        article, article_created = Article.objects.get_or_create(
            slug=seed.ARTICLE_SLUG,
            defaults={
                **article_fields,
                "report": report,
                "status": Article.Status.PUBLISHED,
                "published_at": timezone.now(),
            },
        )
        if overwrite and not article_created:
            for field, value in article_fields.items():
                setattr(article, field, value)
            article.report = report
            article.save()
        followups_seed(report=report, overwrite=overwrite)
    return article, report


#: A bundled step's fields ``--restore`` puts back.
FOLLOWUP_SEED_FIELDS = ("delay_days", "subject", "body")


def followups_seed(*, report: Report, overwrite: bool = False) -> int:
    """Create the bundled follow-up steps of ``report`` missing by (language, position), or
    restore their text when ``overwrite``. Returns how many were created or changed.

    The sequence's switch (``report.followups_enabled``, off by default) is never touched: a
    site mails follow-ups only once its owner turns them on. A restore goes through
    :func:`~backpain_report.services.followups.step_save`: a step whose text already went out
    gets a new edition (the record keeps what each reader got).
    """
    count = 0
    for bundled in seed.followup_fields():
        fields = {name: getattr(bundled, name) for name in FOLLOWUP_SEED_FIELDS}
        step, created = FollowUpStep.objects.get_or_create(
            report=report,
            language=bundled.language,
            position=bundled.position,
            defaults=fields,
        )
        changed = [name for name, value in fields.items() if getattr(step, name) != value]
        if overwrite and not created and changed:
            for name in changed:
                setattr(step, name, fields[name])
            step_save(step)
        count += created or (overwrite and bool(changed))
    return count


def articles_publish(articles: QuerySet[Article]) -> int:
    """Publish the draft articles among ``articles`` (first publication date kept if set)."""
    drafts = articles.exclude(status=Article.Status.PUBLISHED)
    now = timezone.now()
    with transaction.atomic():
        drafts.filter(published_at__isnull=True).update(published_at=now)
        count = drafts.update(status=Article.Status.PUBLISHED, updated_at=now)
        if count:  # an update sends no post_save: drop the stored pages here
            pagecache.pages_invalidate_on_commit()
        return count


def articles_unpublish(articles: QuerySet[Article]) -> int:
    """Turn the published articles among ``articles`` back into drafts."""
    count = articles.filter(status=Article.Status.PUBLISHED).update(
        status=Article.Status.DRAFT, updated_at=timezone.now()
    )
    if count:  # an update sends no post_save: drop the stored pages here
        pagecache.pages_invalidate_on_commit()
    return count
