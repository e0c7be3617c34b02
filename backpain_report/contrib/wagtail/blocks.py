"""The StreamField block that puts an article's free-report sign-up form into a Wagtail page."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from wagtail import blocks
from wagtail.snippets.blocks import SnippetChooserBlock

from ...models import Article


def article_offers_report(article: Article | None) -> bool:
    """Whether ``article`` is published and offers a report: only then does a sign-up for it
    deliver that report (else the sign-up would fall back to the default article's)."""
    return (
        article is not None
        and article.status == Article.Status.PUBLISHED
        and article.report_id is not None
    )


class ReportSignupBlock(blocks.StructBlock):
    """An optional heading and the sign-up form for the chosen article's report.

    Rendered with ``{% report_signup_form article %}``, so it is the same form (cached HTML, no
    token, source fields filled in by the browser) as on the article's own page."""

    article = SnippetChooserBlock(
        "backpain_report.Article",
        label=_("Article"),
        help_text=_("A published article offering a report: readers get that report."),
    )
    heading = blocks.CharBlock(required=False, max_length=200, label=_("Heading"))

    class Meta:
        template = "backpain_report/wagtail/signup_block.html"
        icon = "mail"
        label = _("Free report sign-up form")

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if not article_offers_report(value.get("article")):
            raise blocks.StructBlockValidationError(
                block_errors={
                    "article": ValidationError(
                        _("Choose a published article that offers a report.")
                    )
                }
            )
        return value

    def get_context(self, value: Any, parent_context: dict | None = None) -> dict[str, Any]:
        context = super().get_context(value, parent_context=parent_context)
        # An article unpublished (or left without a report) since the page was saved: no form.
        context["article"] = value["article"] if article_offers_report(value["article"]) else None
        return context
