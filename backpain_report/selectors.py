"""Reads: the article a page or a sign-up is about, the report offered, a reader's language.

Plain functions that change nothing; the writes are in :mod:`backpain_report.services`.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.http import Http404
from django.utils import translation

from .conf import app_settings
from .models import Article, Report, Subscriber


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


def article_ref_for_signup(*, slug: str | None) -> Article | None:
    """:func:`article_for_signup` reduced to what a submitted sign-up stores: the article's id
    and slug (one indexed look-up, nothing joined); the worker reads the rest."""
    articles = Article.objects.published().only("pk", "slug")
    if slug:
        article = articles.filter(slug=slug).order_by().first()
        if article is not None:
            return article
    return article_for_signup(slug=None)


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
    """The language a subscriber's emails and report are written in: the one they signed up
    in (or its variant in ``LANGUAGES``), else the site's ``LANGUAGE_CODE``, also when the site
    no longer lists the stored one."""
    try:
        return translation.get_supported_language_variant(subscriber.language or "")
    except LookupError:
        return settings.LANGUAGE_CODE
