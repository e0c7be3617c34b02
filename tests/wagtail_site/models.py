"""A page type as a Wagtail site would have it: a body StreamField with the sign-up block."""

from wagtail import blocks
from wagtail.fields import StreamField
from wagtail.models import Page

from backpain_report.contrib.wagtail.blocks import ReportSignupBlock


class ContentPage(Page):
    body = StreamField(
        [("paragraph", blocks.RichTextBlock()), ("report_signup", ReportSignupBlock())],
        blank=True,
    )
    template = "wagtail_site/content_page.html"
