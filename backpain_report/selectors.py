"""Reads: the article a page or sign-up is about, the report offered, what is held about a reader.

Plain functions that change nothing; the writes are in :mod:`backpain_report.services`.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from .conf import app_settings
from .models import Article, FollowUpStep, PendingSignup, Report, Subscriber
from .page.sources import SOURCE_FIELDS


def _with_report():
    """Published articles with their report's row, less the report's body (the page and the
    sign-up never show it; it is the largest text in the table)."""
    return Article.objects.published().select_related("report").defer("report__body")


def article_published_get(*, slug: str) -> Article:
    """A published article by slug, with its report; 404 otherwise."""
    try:
        return _with_report().get(slug=slug)
    except Article.DoesNotExist as exc:
        raise Http404("No such article.") from exc


def article_default() -> Article:
    """The article shown at the root of the app: ``DEFAULT_ARTICLE``, else the newest one."""
    articles = _with_report()
    article = articles.filter(slug=app_settings.DEFAULT_ARTICLE).first() or articles.first()
    if article is None:
        raise Http404("No article has been published yet.")
    return article


def article_for_signup(*, slug: str | None) -> Article | None:
    """The article a sign-up came from: the posted slug, else the default; None if none.

    Its body is not read (a sign-up needs the article's id and address, not its text)."""
    articles = _with_report().defer("body")
    if slug:
        article = articles.filter(slug=slug).first()
        if article is not None:
            return article
    try:
        return article_default()
    except Http404:
        return None


def article_ref_for_signup(*, slug: str | None, language: str = "") -> Article | None:
    """:func:`article_for_signup` reduced to what a submitted sign-up stores: the article's id
    and slug (one indexed look-up), and ``followups_on``: whether its report offers follow-ups
    in ``language`` now (see :func:`followups_offered`); the worker reads the rest."""
    articles = (
        Article.objects.published()
        .only("pk", "slug")
        .annotate(followups_on=Exists(_active_steps(OuterRef("report_id"), language)))
    )
    if slug:
        article = articles.filter(slug=slug).order_by().first()
        if article is not None:
            return article
    return article_for_signup(slug=None)


def step_language_q(language: str) -> Q:
    """Steps written for a reader of ``language``: steps for every language (blank), for the
    language (``"de"``, ``"en-gb"``) or for its primary tag (``"en"`` for ``"en-gb"``)."""
    primary = language.split("-")[0]
    return Q(language="") | Q(language__iexact=language) | Q(language__iexact=primary)


def reader_language_q(language: str, *, prefix: str = "") -> Q:
    """Subscribers a step of ``language`` is written for (blank: every subscriber): those who
    signed up in it or a variant of it, and those with no language when the site's
    ``LANGUAGE_CODE`` is one (``prefix``: the lookup path to Subscriber)."""
    if not language:
        return Q()
    field = f"{prefix}language"
    found = Q(**{f"{field}__iexact": language}) | Q(**{f"{field}__istartswith": f"{language}-"})
    site = settings.LANGUAGE_CODE.lower()
    if site == language.lower() or site.split("-")[0] == language.lower():
        found |= Q(**{field: ""})
    return found


def _active_steps(report_id: Any, language: str) -> QuerySet[FollowUpStep]:
    """The active steps of ``report_id``'s sequence, while it is on, for ``language``."""
    steps = FollowUpStep.objects.filter(
        report_id=report_id, is_active=True, report__followups_enabled=True
    )
    return steps.filter(step_language_q(language)) if language else steps


def followups_offered(*, report_id: int | None, language: str) -> bool:
    """Whether a reader signing up in ``language`` for ``report_id`` is offered follow-ups:
    the report's sequence is on and has an active step for the language."""
    if report_id is None:
        return False
    return _active_steps(report_id, language).exists()


def article_ref_for_view(*, slug: str) -> Article | None:
    """The published article a page view is of, by slug (its id only), or None."""
    if not slug or len(slug) > 200 or "\x00" in slug:  # PostgreSQL refuses a NUL in text
        return None
    return Article.objects.published().only("pk").filter(slug=slug).order_by().first()


def article_for_signup_page(*, slug: str | None) -> Article | None:
    """The article a sign-up with errors is shown again on: the posted slug's, else the
    default; in full (its body is on the page); None if there is none."""
    if slug:
        try:
            return article_published_get(slug=slug)
        except Http404:
            pass
    try:
        return article_default()
    except Http404:
        return None


def report_offered_get(*, slug: str) -> Report:
    """A report some published article offers, without its body; 404 otherwise."""
    offered = Exists(Article.objects.published().filter(report=OuterRef("pk")))
    report = Report.objects.filter(offered, slug=slug).defer("body").first()
    if report is None:
        raise Http404("No such report.")
    return report


def subscriber_language(subscriber: Subscriber) -> str:
    """The language a subscriber's emails and report are written in (see
    :meth:`Subscriber.writing_language`)."""
    return subscriber.writing_language()


def report_for_subscriber(*, subscriber: Subscriber) -> Report | None:
    """The report a subscriber asked for: their source article's, else their last one's."""
    source = subscriber.source_article if subscriber.source_article_id else None
    if source is not None and source.report_id:
        return source.report
    last = subscriber.deliveries.select_related("report").order_by("-created_at").first()
    if last is not None:
        return last.report
    return Report.objects.order_by("pk").first()


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
        "source": {name: getattr(subscriber, name) for name in SOURCE_FIELDS},
        "signed_up_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "suppressed_at": _iso(subscriber.suppressed_at),
        "suppressed_reason": subscriber.suppressed_reason,
        "language": subscriber.language,
        "consent": {
            "text": subscriber.consent_text,
            "version": subscriber.consent_version,
            "given_at": _iso(subscriber.consented_at),
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
            "followups": subscriber.followups_consented,
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
        "bounces_and_complaints": [
            {
                "kind": event.kind,
                "email_service": event.esp,
                "occurred_at": _iso(event.occurred_at),
                "description": event.description,
            }
            for event in subscriber.mail_events.order_by("occurred_at")
        ],
        "pending_signups": pending_signups_export(email_canonical=subscriber.email_canonical),
    }


def pending_signups_export(*, email_canonical: str) -> list[dict[str, Any]]:
    """The sign-ups of an address that no worker has processed yet (normally none)."""
    return [
        {
            "email": signup.email,
            "name": signup.name,
            "source_url": signup.source_url,
            "source": {name: getattr(signup, name) for name in SOURCE_FIELDS},
            "submitted_at": _iso(signup.created_at),
            "language": signup.language,
            "consent": {
                "text": signup.consent_text,
                "version": signup.consent_version,
                "given_at": _iso(signup.consented_at),
                "ip": signup.consent_ip,
                "user_agent": signup.consent_user_agent,
            },
        }
        for signup in PendingSignup.objects.filter(email_canonical=email_canonical).order_by("pk")
    ]
