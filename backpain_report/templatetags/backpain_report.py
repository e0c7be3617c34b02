"""``{% load backpain_report %}{% report_signup_form %}``: the sign-up form on any page."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

from ..formcache import FORM_TEMPLATE, is_cacheable, signup_form_html
from ..forms import SignupForm
from ..models import Article
from ..sources import source_from_request

register = template.Library()


@register.simple_tag(takes_context=True)
def report_signup_form(context: template.Context, article: Article | str | None = None) -> str:
    """Render the free-report form; ``article`` (an Article or its slug) records the source."""
    slug = article.slug if isinstance(article, Article) else (article or "")
    request = context.get("request")
    source = source_from_request(request)  # this page's utm_* and referrer: per request
    if request is not None and is_cacheable():
        return signup_form_html(request, slug=slug, source=source)
    # A site's own form template, or no request: the form in full, with the page's context.
    values: dict[Any, Any] = context.flatten()
    values["form"] = SignupForm(article_slug=slug, source=source)
    return render_to_string(FORM_TEMPLATE, values)


@register.filter(name="markdown")
def markdown_filter(text: str):
    """Render Markdown to sanitised HTML."""
    from ..markup import render_markdown

    return render_markdown(text or "")
