"""Follow-up steps: the list with what each step sent and failed, the step's page with a preview
as the reader sees it (HTML and text, in the step's language), "send a test to me", the on/off
switch (off pauses the step), and a new edition when a text that already went out is edited.

Saving, pausing and resuming are :func:`~backpain_report.services.followups.step_save`'s; the
preview and the test are :mod:`~backpain_report.services.followup_samples`'. Every button
needs ``change_followupstep``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from ..models import Delivery, FollowUpStep
from ..services import followup_samples, followups
from .content import WideFieldsMixin

logger = logging.getLogger(__name__)

SENT = Q(deliveries__status=Delivery.Status.SENT)
FAILED = Q(deliveries__status=Delivery.Status.FAILED)


def readers_of_earlier_editions(step: FollowUpStep) -> int:
    """How many readers were sent an edition of ``step`` older than its current one."""
    return step.deliveries.filter(
        kind=Delivery.Kind.FOLLOWUP, status=Delivery.Status.SENT, edition__lt=step.edition
    ).count()


@admin.register(FollowUpStep)
class FollowUpStepAdmin(WideFieldsMixin, admin.ModelAdmin):
    # The report under each subject, as the subscriber list shows a name under the address:
    # the columns fit 1280 px with both sidebars open.
    list_display = [
        "step", "language_cell", "day", "is_active", "edition", "sent", "failed",
    ]  # fmt: skip
    list_display_links = ["step"]
    sortable_by = ()  # the sequence's order (report, language, position) says most
    list_filter = ["report", "is_active", "language"]
    list_select_related = ["report"]
    search_fields = ["subject"]
    ordering = ["report__title", "report", "language", "position", "pk"]
    readonly_fields = [
        "paused_at", "edition", "earlier_editions", "created_at", "updated_at",
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["report", "language", "position", "delay_days", "is_active"]}),
        (_("Text"), {"fields": ["subject", "body", "edition", "earlier_editions"]}),
        (None, {"fields": ["paused_at", "created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[FollowUpStep]:
        """Each step with its sent and failed counts, in the list's one query."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_sent=Count("deliveries", filter=SENT), n_failed=Count("deliveries", filter=FAILED)
            )
        )

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """``?report=<id>`` (the report page's "Add a step"): that report, and the position
        after its last step."""
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        report = str(initial.get("report", ""))
        if report.isdigit() and "position" not in initial:
            last = FollowUpStep.objects.filter(report_id=int(report)).order_by("-position").first()
            initial["position"] = (last.position + 1) if last else 1
        return initial

    @admin.display(description=_("step"))
    def step(self, obj: FollowUpStep) -> SafeString:
        """ "2. <subject>", and the report it follows (its title) under it."""
        return format_html(
            '{}. {}<span class="backpain-quiet">{}</span>',
            obj.position,
            obj.subject,
            obj.report.title,
        )

    @admin.display(description=_("day"))
    def day(self, obj: FollowUpStep) -> int:
        """The delay: whole days after the report was sent."""
        return obj.delay_days

    @admin.display(description=_("language"), ordering="language")
    def language_cell(self, obj: FollowUpStep) -> str:
        return obj.language or str(_("every language"))

    @admin.display(description=_("sent"), ordering="n_sent")
    def sent(self, obj: FollowUpStep) -> int:
        return getattr(obj, "n_sent", 0)

    @admin.display(description=_("failed"), ordering="n_failed")
    def failed(self, obj: FollowUpStep) -> int:
        return getattr(obj, "n_failed", 0)

    @admin.display(description=_("readers of earlier editions"))
    def earlier_editions(self, obj: FollowUpStep) -> str:
        if not obj.pk:
            return "—"
        n = readers_of_earlier_editions(obj)
        return ngettext(
            "%(n)d reader got an earlier edition.", "%(n)d readers got earlier editions.", n
        ) % {"n": n}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The page, with the saved step's email as a sample reader in its language gets it
        (built by the function that builds the real one; links to this site)."""
        step = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if step is not None:
            site_url = request.build_absolute_uri("/").rstrip("/")
            context["followup_sample"] = followup_samples.followup_sample(
                step=step, site_url=site_url
            )
            context["sample_reader"] = followup_samples.SAMPLE_READER
        return super().change_view(request, object_id, form_url, context)

    def save_model(
        self, request: HttpRequest, obj: FollowUpStep, form: ModelForm, change: bool
    ) -> None:
        before = obj.edition
        followups.step_save(step=obj)
        if change and obj.edition != before:
            self.message_user(
                request,
                _(
                    "This step already went out: the change is edition %(edition)d; readers "
                    "who got the earlier edition keep its text in the record."
                )
                % {"edition": obj.edition},
                messages.INFO,
            )

    # ---- "Send a test to me" ---------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:object_id>/send-test/",
                self.admin_site.admin_view(require_POST(self.send_test_view)),
                name="backpain_report_followupstep_send_test",
            )
        ]
        return [*own, *super().get_urls()]

    def send_test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """POST: the step's email to the member of staff's own address; needs change."""
        step = get_object_or_404(FollowUpStep.objects.select_related("report"), pk=object_id)
        if not self.has_change_permission(request, step):
            raise PermissionDenied
        back = HttpResponseRedirect(
            reverse("admin:backpain_report_followupstep_change", args=[step.pk])
        )
        to = getattr(request.user, "email", "")
        if not to:
            self.message_user(
                request,
                _(
                    "Your staff account has no email address, so there is nowhere to send "
                    "a test: add one to your user first."
                ),
                messages.ERROR,
            )
            return back
        site_url = request.build_absolute_uri("/").rstrip("/")
        try:
            followup_samples.followup_test_send(step=step, to=to, site_url=site_url)
        except Exception as error:  # the mailer's: the member of staff is told, and it is logged
            logger.exception("Sending a test of follow-up step %s failed", step.pk)
            self.message_user(
                request,
                _("The test could not be sent: %(error)s") % {"error": error},
                messages.ERROR,
            )
            return back
        self.message_user(
            request,
            _("A test of this email was sent to %(email)s.") % {"email": to},
            messages.SUCCESS,
        )
        return back


__all__ = ["FollowUpStepAdmin", "readers_of_earlier_editions"]
