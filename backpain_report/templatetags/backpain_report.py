"""``{% load backpain_report %}{% report_signup_form %}``: the sign-up form on any page."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string

from ..forms import SignupForm, form_is_cacheable, signup_form_html
from ..models import Article
from ..page.pagecache import FORM_TEMPLATE

register = template.Library()


@register.simple_tag(takes_context=True)
def report_signup_form(context: template.Context, article: Article | str | None = None) -> str:
    """Render the free-report form; ``article`` (an Article or its slug) records the source.

    The same HTML for every reader (no token; the page's ``signup.js`` fills in the source
    fields), so the page around it may be cached too."""
    slug = article.slug if isinstance(article, Article) else (article or "")
    if form_is_cacheable():
        return signup_form_html(slug=slug)
    # A site's own form template: the form in full, with the page's context.
    values: dict[Any, Any] = context.flatten()
    values["form"] = SignupForm(article_slug=slug)
    return render_to_string(FORM_TEMPLATE, values)


@register.filter(name="markdown")
def markdown_filter(text: str):
    """Render Markdown to sanitised HTML."""
    from ..report.markup import render_markdown

    return render_markdown(text or "")
