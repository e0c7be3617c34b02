"""``{% load backpain_report %}{% report_signup_form %}``: the sign-up form on any page."""

from __future__ import annotations

from typing import Any

from django import template

from ..forms import SignupForm
from ..models import Article

register = template.Library()


@register.inclusion_tag("backpain_report/signup_form.html", takes_context=True)
def report_signup_form(context: template.Context, article: Article | str | None = None) -> dict:
    """Render the free-report form; ``article`` (an Article or its slug) records the source."""
    slug = article.slug if isinstance(article, Article) else (article or "")
    result: dict[str, Any] = {
        "form": SignupForm(article_slug=slug),
        "request": context.get("request"),
    }
    if "csrf_token" in context:
        result["csrf_token"] = context["csrf_token"]
    return result


@register.filter(name="markdown")
def markdown_filter(text: str):
    """Render Markdown to sanitised HTML."""
    from ..markup import render_markdown

    return render_markdown(text or "")
