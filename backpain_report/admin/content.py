"""Articles and reports: Markdown with a rendered preview, publishing, the PDF preview, and a
new edition whenever a report's content is edited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import Article, Report
from ..report.markup import render_markdown
from ..services import content
from .common import date_cell

#: The reader's name on a PDF previewed from the admin.
SAMPLE_READER = "Sam Sample"
#: Text inputs as wide as a title can be (Django's default cut "Your Practical Relief Guide").
WIDE_FIELDS = ("title", "subtitle", "summary", "slug", "author", "template_name", "subject")
#: The Markdown box's width in characters: the bundled report's longest source line (98) and
#: a little room, so each line of the source stays one line in the box.
MARKDOWN_COLUMNS = 100


#: The report's switch for its follow-up sequence, in the owner's words.
FOLLOWUPS_HELP = _(
    "On: readers who agreed to follow-ups get the active steps, on schedule, and the sign-up "
    "form's consent names them. Off: no follow-up is sent and the form does not ask for them."
)


class WideFieldsMixin:
    """Give titles and Markdown the width they need (styled in ``css/admin.css``)."""

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        if formfield is None:
            return None
        attrs = formfield.widget.attrs
        if db_field.name in WIDE_FIELDS:
            attrs["class"] = f"{attrs.get('class', '')} backpain-wide".strip()
        elif db_field.name == "body":
            attrs.update(cols=MARKDOWN_COLUMNS, rows=24, spellcheck="true")
            attrs["class"] = f"{attrs.get('class', '')} backpain-markdown".strip()
        return formfield


def markdown_preview(text: str) -> SafeString:
    """``text`` rendered and sanitised exactly as readers see it, in a bordered box."""
    return format_html('<div class="backpain-preview">{}</div>', render_markdown(text or ""))


@admin.register(Report)
class ReportAdmin(WideFieldsMixin, admin.ModelAdmin):
    list_display = ["title", "edition", "updated"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = [
        "edition", "pdf_preview", "body_preview", "followup_links", "created_at", "updated_at",
    ]  # fmt: skip
    fields = [
        "title", "subtitle", "slug", "author", "edition", "template_name", "pdf_preview",
        "body", "body_preview", "followups_enabled", "followup_links", "created_at", "updated_at",
    ]  # fmt: skip

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "followups_enabled" and formfield is not None:
            formfield.help_text = FOLLOWUPS_HELP
        return formfield

    def get_fields(
        self, request: HttpRequest, obj: Report | None = None
    ) -> list[str | list[str] | tuple[str, ...]]:
        fields = list(super().get_fields(request, obj))
        if not self.has_change_permission(request, obj):  # the preview URL would answer 403
            fields.remove("pdf_preview")
        return fields

    @admin.display(description=_("updated"), ordering="updated_at")
    def updated(self, obj: Report) -> SafeString | str:
        return date_cell(obj.updated_at)

    @admin.display(description=_("preview"))
    def body_preview(self, obj: Report) -> SafeString:
        return markdown_preview(obj.body) if obj.pk else SafeString("")

    @admin.display(description=_("follow-up emails"))
    def followup_links(self, obj: Report) -> SafeString | str:
        """The report's steps (position, day, language, subject, on or off), each a link to its
        page (text, preview, test, on/off), and a link to add one."""
        if not obj.pk:
            return str(_("Save the report first, then add its follow-up emails."))
        steps = obj.followup_steps.order_by("language", "position", "pk")
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td>{}</td><td><a href="{}">{}</a></td><td>{}</td></tr>',
            (
                (
                    step.position,
                    step.delay_days,
                    step.language or _("every language"),
                    reverse("admin:backpain_report_followupstep_change", args=[step.pk]),
                    step.subject,
                    _("active") if step.is_active else _("paused"),
                )
                for step in steps
            ),
        )
        table = (
            format_html(
                '<table class="backpain-steps"><thead><tr><th scope="col">{}</th>'
                '<th scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th>'
                '<th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>',
                _("position"),
                _("delay (days)"),
                _("language"),
                _("subject"),
                _("state"),
                rows,
            )
            if rows
            else ""
        )
        listing = reverse("admin:backpain_report_followupstep_changelist")
        add = reverse("admin:backpain_report_followupstep_add")
        return format_html(
            '{}<p><a href="{}?report__id__exact={}">{}</a> · <a href="{}?report={}">{}</a></p>',
            table,
            listing,
            obj.pk,
            _("The steps, with what each sent"),
            add,
            obj.pk,
            _("Add a step"),
        )

    @admin.display(description=_("PDF"))
    def pdf_preview(self, obj: Report) -> SafeString:
        if not obj.pk:
            return SafeString("")
        url = reverse("admin:backpain_report_report_pdf_preview", args=[obj.pk])
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>',
            url,
            _("Preview the PDF for a sample reader (saved version)"),
        )

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "<int:object_id>/pdf-preview/",
            self.admin_site.admin_view(self.pdf_preview_view),
            name="backpain_report_report_pdf_preview",
        )
        return [preview, *super().get_urls()]

    def pdf_preview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The saved report rendered for :data:`SAMPLE_READER`; needs ``change_report``."""
        report = get_object_or_404(Report, pk=object_id)
        if not self.has_change_permission(request, report):
            raise PermissionDenied
        from ..report.pdf import render_report_pdf  # WeasyPrint: imported where the PDF is rendered

        pdf = render_report_pdf(
            report=report, reader_name=SAMPLE_READER, prepared_on=timezone.localdate()
        )
        response = HttpResponse(pdf, content_type="application/pdf")
        filename = f"{report.slug}-edition-{report.edition}-preview.pdf"
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        response["Cache-Control"] = "private, no-store"
        return response

    def save_model(self, request: HttpRequest, obj: Report, form: ModelForm, change: bool) -> None:
        bumped = content.report_save(
            report=obj, changed_fields=form.changed_data, created=not change
        )
        if bumped:
            self.message_user(
                request,
                _("The content changed: this is now edition %(edition)d.")
                % {"edition": obj.edition},
                messages.INFO,
            )


@admin.register(Article)
class ArticleAdmin(WideFieldsMixin, admin.ModelAdmin):
    # The original publication date is on the article's page; these fit a 1280 px screen.
    list_display = ["title", "status", "report", "published"]
    list_filter = ["status", "published_at"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["body_preview", "created_at", "updated_at"]
    list_select_related = ["report"]
    date_hierarchy = "published_at"
    actions = ["publish", "unpublish"]

    @admin.display(description=_("published"), ordering="published_at")
    def published(self, obj: Article) -> SafeString | str:
        return date_cell(obj.published_at)

    @admin.display(description=_("preview"))
    def body_preview(self, obj: Article) -> SafeString:
        return markdown_preview(obj.body) if obj.pk else SafeString("")

    @admin.action(description=_("Publish the selected articles"), permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        count = content.articles_publish(queryset)
        self.message_user(
            request,
            ngettext("Published %d article.", "Published %d articles.", count) % count,
            messages.SUCCESS,
        )

    @admin.action(description=_("Unpublish the selected articles"), permissions=["change"])
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        count = content.articles_unpublish(queryset)
        self.message_user(
            request,
            ngettext("Unpublished %d article.", "Unpublished %d articles.", count) % count,
            messages.SUCCESS,
        )


__all__ = ["ArticleAdmin", "ReportAdmin", "markdown_preview"]
