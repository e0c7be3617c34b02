"""Subscribers: the list (fast at a million rows), the consent record, the delivery timeline,
and the CSV export of the filtered list (permission ``backpain_report.export_subscriber``)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import selectors
from ..conf import app_settings
from ..models import Delivery, Subscriber
from ..page.sources import SOURCE_FIELDS, source_label
from ..rights import suppression
from ..rights.addresses import canonical_email
from ..rights.export import with_last_status
from ..services import deliveries, privacy
from .common import csv_response, date_cell, report_resend
from .filters import (
    ConfirmedFilter,
    LastStatusFilter,
    SourceArticleFilter,
    SuppressedFilter,
    UnsubscribedFilter,
    date_range_filter,
    titled_date_filter,
)
from .paginator import LargeTablePaginator
from .timeline import timeline_events

STATUS_LABELS = dict(Delivery.Status.choices)
#: The report's status in the list, in the owner's words: it went out, it failed, or it is on
#: its way (queued or being sent).
REPORT_STATUS_LABELS: dict[str, str | Promise] = {
    Delivery.Status.SENT: _("Sent"),
    Delivery.Status.FAILED: _("Failed"),
    Delivery.Status.PENDING: _("Waiting"),
    Delivery.Status.SENDING: _("Waiting"),
    Delivery.Status.CANCELLED: _("Cancelled"),
}
CONSENT_FIELDS = (
    "consent_text", "consent_version", "consented_at", "consent_ip", "consent_user_agent",
    "followups_consented", *SOURCE_FIELDS, "created_at", "confirmed_at", "unsubscribed_at",
    "language",
)  # fmt: skip
SUPPRESSION_FIELDS = ("suppressed_at", "suppressed_reason", "suppression_lifted_at")


def subscriber_state(subscriber: Subscriber, *, double_opt_in: bool) -> str | Promise:
    """One word on where the reader stands: unsubscribed, confirmed, waiting to confirm, or
    (single opt-in, where nobody confirms) simply subscribed."""
    if subscriber.unsubscribed_at:
        return _("Unsubscribed")
    if subscriber.confirmed_at:
        return _("Confirmed")
    if double_opt_in:
        return _("Not confirmed")
    return _("Subscribed")


def report_status_label(status: str | None) -> str:
    """The list's word for the status of a reader's latest report: "Sent", "Failed",
    "Waiting" (pending or sending), "Cancelled", or "—" when no report was sent yet."""
    return str(REPORT_STATUS_LABELS.get(status, "—")) if status else "—"


def last_report_status() -> Subquery:
    """The status of a subscriber's latest report (not a confirmation request), for
    ``.annotate()``: one lookup on the (subscriber, created_at) index per listed row."""
    latest = Delivery.objects.filter(subscriber=OuterRef("pk"), kind=Delivery.Kind.REPORT).order_by(
        "-created_at", "-pk"
    )
    return Subquery(latest.values("status")[:1])


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "report", "step", "edition", "reason", "status", "attempts", "sent_at", "last_error",
    )  # fmt: skip

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    # What an owner scans for first; the article, the consent record and every date are on the
    # subscriber's page. The columns fit a 1280 px screen with both sidebars open (measured in
    # tests/realservices/test_admin_browser.py).
    list_display = ["subscriber", "state", "report_status", "source", "language_cell", "signed_up"]
    list_display_links = ["subscriber"]
    list_filter = [
        ConfirmedFilter,
        UnsubscribedFilter,
        SuppressedFilter,
        LastStatusFilter,
        ("created_at", titled_date_filter(_("sign-up date"))),
        date_range_filter("created_at", _("sign-up date, from and to")),
        ("source_article", SourceArticleFilter),
    ]
    search_fields = ["email_canonical", "name"]
    search_help_text = _(
        "A full email address finds that subscriber; other text searches names and the "
        "start of addresses."
    )
    list_select_related = ["source_article"]
    sortable_by = ["signed_up"]  # created_at: the one order with an index behind it at 1M rows
    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice: too slow at 1M rows
    list_per_page = 100
    # The address is read-only: editing it here would leave email_canonical (the identity) stale.
    readonly_fields = [
        "email", "email_canonical", "source_article", "source_url", "consent_text",
        "consent_version", "consented_at", "consent_ip", "consent_user_agent",
        "followups_consented", "created_at",
        "confirmed_at", "unsubscribed_at", "delivery_timeline", *SUPPRESSION_FIELDS, "language",
        *SOURCE_FIELDS,
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["name", "email", "email_canonical", "source_article", "source_url"]}),
        (_("Consent record"), {"fields": CONSENT_FIELDS}),
        (_("Bounces and complaints"), {"fields": SUPPRESSION_FIELDS}),
        (_("Delivery timeline"), {"fields": ["delivery_timeline"]}),
    ]
    inlines = [DeliveryInline]
    actions = [
        "resend_report", "lift_suppression", "export_csv", "export_data", "erase_data",
        "purge_unconfirmed",
    ]  # fmt: skip

    def get_queryset(self, request: HttpRequest) -> QuerySet[Subscriber]:
        queryset = with_last_status(super().get_queryset(request))
        return queryset.annotate(last_report_status=last_report_status())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Subscriber], search_term: str
    ) -> tuple[QuerySet[Subscriber], bool]:
        """A full address: one lookup on the unique canonical index. Otherwise the name
        (contains) or the start of the address (index prefix scan)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        local, at, domain = term.rpartition("@")
        if at and local and domain and " " not in term:
            try:
                return queryset.filter(email_canonical=canonical_email(term)), False
            except ValidationError:
                return queryset.none(), False
        by_name = queryset.filter(name__icontains=term)
        return by_name | queryset.filter(email_canonical__startswith=term.lower()), False

    @admin.display(description=_("subscriber"))
    def subscriber(self, obj: Subscriber) -> SafeString:
        return format_html('{}<span class="backpain-quiet">{}</span>', obj.email, obj.name)

    @admin.display(description=_("state"))
    def state(self, obj: Subscriber) -> str:
        return str(subscriber_state(obj, double_opt_in=app_settings.DOUBLE_OPT_IN))

    @admin.display(description=_("signed up"), ordering="created_at")
    def signed_up(self, obj: Subscriber) -> SafeString | str:
        return date_cell(obj.created_at, with_time=True)

    @admin.display(description=_("report"))
    def report_status(self, obj: Subscriber) -> str:
        return report_status_label(getattr(obj, "last_report_status", None))

    @admin.display(description=_("source"))
    def source(self, obj: Subscriber) -> SafeString:
        """The campaign (``utm_source``) or the referring host, the whole source in its
        tooltip; "(direct)" when neither is known."""
        full = source_label({name: getattr(obj, name) for name in SOURCE_FIELDS})
        return format_html(
            '<span class="backpain-source" title="{}">{}</span>',
            full,
            obj.utm_source or obj.referrer_host or full,
        )

    @admin.display(description=_("language"))
    def language_cell(self, obj: Subscriber) -> SafeString:
        """The language code the reader's emails are in (blank: the site's), named in its
        tooltip."""
        code = obj.language or settings.LANGUAGE_CODE
        name = dict(settings.LANGUAGES).get(code) or dict(settings.LANGUAGES).get(
            code.split("-")[0], code
        )
        return format_html('<abbr title="{}">{}</abbr>', str(name), code.split("-")[0])

    @admin.display(description=_("timeline"))
    def delivery_timeline(self, obj: Subscriber) -> str:
        return render_to_string(
            "admin/backpain_report/subscriber/timeline.html",
            {"events": timeline_events(obj) if obj.pk else []},
        )

    # --- export ---------------------------------------------------------------------------

    def has_export_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.export_{opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="{}_{}_export".format(*info),
        )
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The changelist's filtered, searched list as a streamed CSV; 403 without permission."""
        if not (self.has_view_permission(request) and self.has_export_permission(request)):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:backpain_report_subscriber_changelist"))
        return csv_response(changelist.queryset)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_export": self.has_export_permission(request)}
        return super().changelist_view(request, extra_context)

    def delete_model(self, request: HttpRequest, obj: Subscriber) -> None:
        privacy.subscribers_delete(Subscriber.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        """Deleting subscribers also deletes the PDFs stored for them (they hold the name)."""
        privacy.subscribers_delete(queryset)

    # --- actions --------------------------------------------------------------------------

    @admin.action(description=_("Export the selected subscribers (CSV)"), permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> HttpResponseBase:
        return csv_response(queryset)

    @admin.action(
        description=_("Export the selected subscribers' data (JSON)"), permissions=["export"]
    )
    def export_data(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> HttpResponse:
        data = [
            selectors.subscriber_export(subscriber=s)
            for s in queryset.select_related("source_article")
        ]
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="subscribers.json"'
        return response

    @admin.action(
        description=_("Erase the selected subscribers' personal data"), permissions=["delete"]
    )
    def erase_data(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        count = 0
        for subscriber in queryset:
            privacy.subscriber_erase(subscriber=subscriber)
            count += 1
        self.message_user(
            request,
            ngettext("Erased %d subscriber.", "Erased %d subscribers.", count) % count,
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Purge the selected sign-ups that never confirmed"), permissions=["delete"]
    )
    def purge_unconfirmed(
        self, request: HttpRequest, queryset: QuerySet[Subscriber]
    ) -> HttpResponse | None:
        """Among the selection, delete readers asked to confirm (double opt-in) whose link
        expired unanswered; a page lists them first (the dry run) and asks to go ahead."""
        days = privacy.subscribers_purge_min_days()
        try:
            stale = privacy.subscribers_unconfirmed_stale(older_than_days=days).filter(
                pk__in=queryset.values("pk")
            )
        except privacy.PurgeNotApplicable as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return None
        if request.POST.get("confirm_purge") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Purge sign-ups that never confirmed"),
                "stale": stale.order_by("confirmation_requested_at")[:500],
                "count": stale.count(),
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "days": days,
                "action": "purge_unconfirmed",
            }
            return TemplateResponse(
                request, "admin/backpain_report/subscriber/purge_unconfirmed.html", context
            )
        count = privacy.subscribers_purge_unconfirmed(older_than_days=days, subscribers=queryset)
        self.message_user(
            request,
            ngettext(
                "Deleted %d sign-up that never confirmed.",
                "Deleted %d sign-ups that never confirmed.",
                count,
            )
            % count,
            messages.SUCCESS,
        )
        return None

    @admin.action(
        description=_("Resend the report to the selected subscribers"), permissions=["add_delivery"]
    )
    def resend_report(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        report_resend(self, request, deliveries.deliveries_resend(queryset))

    @admin.action(
        description=_("Lift the suppression of the selected subscribers (send to them again)"),
        permissions=["change"],
    )
    def lift_suppression(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        count = suppression.subscribers_unsuppress(queryset)
        if not count:
            self.message_user(
                request, _("None of the selected subscribers is suppressed."), messages.WARNING
            )
            return
        self.message_user(
            request,
            ngettext(
                "Lifted the suppression of %d subscriber. Nothing was sent: a resend or a new "
                "sign-up sends again; a new bounce or complaint suppresses the address again.",
                "Lifted the suppression of %d subscribers. Nothing was sent: a resend or a new "
                "sign-up sends again; a new bounce or complaint suppresses the addresses again.",
                count,
            )
            % count,
            messages.SUCCESS,
        )

    def has_add_delivery_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("backpain_report.add_delivery")
