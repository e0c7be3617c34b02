"""Articles and reports as Wagtail snippets: editors find and pick them in Wagtail's admin.

A report edited here goes through :func:`backpain_report.services.content.report_save`, as in the
Django admin: a change of content makes a new edition.
"""

from __future__ import annotations

from django.forms import ModelForm
from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import FieldPanel
from wagtail.snippets.models import register_snippet
from wagtail.snippets.views.snippets import CreateView, EditView, SnippetViewSet

from ...models import Article, Report
from ...services import content


class ArticleViewSet(SnippetViewSet):
    model = Article
    icon = "doc-full"
    menu_label = _("Report articles")
    list_display = ["title", "status", "report"]
    list_filter = ["status"]


class _ReportSaveMixin:
    """Save through ``report_save`` (the edition is bumped when the content changes)."""

    form: ModelForm[Report]  # set by Wagtail's CreateView / EditView

    def save_instance(self) -> Report:
        report = self.form.save(commit=False)
        content.report_save(
            report=report, changed_fields=self.form.changed_data, created=report._state.adding
        )
        return report


class ReportCreateView(_ReportSaveMixin, CreateView):
    pass


class ReportEditView(_ReportSaveMixin, EditView):
    pass


class ReportViewSet(SnippetViewSet):
    model = Report
    icon = "doc-full-inverse"
    menu_label = _("Free reports")
    list_display = ["title", "slug", "edition"]
    add_view_class = ReportCreateView
    edit_view_class = ReportEditView
    # The edition is not edited by hand: report_save bumps it when the content changes.
    panels = [
        FieldPanel(name)
        for name in ("title", "subtitle", "slug", "author", "body", "template_name")
    ]


register_snippet(ArticleViewSet)
register_snippet(ReportViewSet)
