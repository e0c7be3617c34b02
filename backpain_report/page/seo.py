"""What search engines and link previews read from the article page: absolute URLs, JSON-LD."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe

from .. import site
from ..conf import app_settings
from ..models import Article

# What keeps a JSON string from closing the <script> element (as Django's json_script does).
_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}
#: The organisation named as author when an article has no byline.
DEFAULT_AUTHOR = "The Back Pain Report team"


def absolute_url(request: HttpRequest, path: str) -> str:
    """``path`` on the site's canonical origin (``SITE_URL``), else on the request's."""
    if app_settings.SITE_URL:
        return site.absolute(path)
    return request.build_absolute_uri(path)


def _author(article: Article) -> dict[str, str]:
    if article.byline:
        return {"@type": "Person", "name": article.byline}
    report = article.report
    return {"@type": "Organization", "name": (report.author if report else "") or DEFAULT_AUTHOR}


def article_structured_data(article: Article, *, url: str, image_url: str) -> dict[str, Any]:
    """schema.org ``Article`` data for ``article`` (on a ``MedicalWebPage``)."""
    published = article.original_publication_date or article.published_at or article.created_at
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Article",
        "headline": article.title[:110],
        "description": article.summary,
        "datePublished": published.isoformat() if published else None,
        "dateModified": article.updated_at.isoformat() if article.updated_at else None,
        "author": _author(article),
        "mainEntityOfPage": {"@type": "MedicalWebPage", "@id": url},
        "url": url,
    }
    if image_url:
        data["image"] = [image_url]
    return {key: value for key, value in data.items() if value not in (None, "")}


def json_ld(data: dict[str, Any]) -> SafeString:
    """``data`` as a ``<script type="application/ld+json">`` data block (not executed, so a
    ``script-src`` policy does not apply), escaped like Django's ``json_script``."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True).translate(_SCRIPT_ESCAPES)
    return mark_safe(f'<script type="application/ld+json">{text}</script>')
