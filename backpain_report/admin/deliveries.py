"""Deliveries (the outbox): status, attempts, errors; resend, retry failed, cancel pending."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format as localized_date
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import Delivery, Subscriber
from ..rights.addresses import canonical_email
from ..services import deliveries, privacy
from .common import date_cell, report_resend, retry_skipped_report
from .filters import date_range_filter
from .paginator import LargeTablePaginator

#: The steps of a delivery, in the order they happen; each is shown once it has a value.
STEP_FIELDS = (
    "enqueued_at", "claimed_at", "next_attempt_at", "publish_failed_at", "last_error",
    "sent_at", "message_id", "downloaded_at",
)  # fmt: skip


def delivery_steps_shown(delivery: Delivery) -> list[str]:
    """The status, the attempts, and the steps with a value; a sent report also shows
    whether it was downloaded ("-" means not yet) and its download link's version."""
    shown = ["status", "attempts"]
    shown += [name for name in STEP_FIELDS if getattr(delivery, name) not in (None, "")]
    if delivery.status == Delivery.Status.SENT and delivery.kind == Delivery.Kind.REPORT:
        shown += [name for name in ("downloaded_at", "link_version") if name not in shown]
    return shown


def _when(value: datetime.datetime) -> str:
    return localized_date(timezone.localtime(value), "DATETIME_FORMAT")


def delivery_summary(delivery: Delivery) -> str:
    """One sentence on where the delivery stands, e.g. "Failed after 5 attempts: …"."""
    attempts = delivery.attempts
    if delivery.status == Delivery.Status.SENT:
        text = (
            _("Sent on %(when)s.") % {"when": _when(delivery.sent_at)}
            if delivery.sent_at
            else _("Sent.")
        )
        if delivery.kind == Delivery.Kind.REPORT:
            text += " " + (
                _("Downloaded on %(when)s.") % {"when": _when(delivery.downloaded_at)}
                if delivery.downloaded_at
                else _("Not downloaded yet.")
            )
        return str(text)
    if delivery.status == Delivery.Status.FAILED:
        return ngettext(
            "Failed after %(n)d attempt: %(error)s",
            "Failed after %(n)d attempts: %(error)s",
            attempts,
        ) % {"n": attempts, "error": delivery.last_error or "—"}
    if delivery.status == Delivery.Status.CANCELLED:
        return str(_("Cancelled: nothing more will be sent."))
    if delivery.status == Delivery.Status.SENDING:
        return str(_("Waiting: a worker is sending it now."))
    if delivery.next_attempt_at:
        return str(
            _("Waiting: the next attempt is at %(when)s.")
            % {"when": _when(delivery.next_attempt_at)}
        )
    return str(_("Waiting for a worker."))


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    # What an owner scans for first; every other field is on the delivery's page. The columns
    # fit a 1280 px screen with both sidebars open.
    list_display = ["subscriber_email", "what", "status_cell", "short_error", "created"]
    list_display_links = ["subscriber_email"]
    list_filter = [
        "status",
        "kind",
        "reason",
        ("created_at", admin.DateFieldListFilter),
        date_range_filter("created_at", _("created between")),
        ("sent_at", admin.DateFieldListFilter),
        "report",
    ]
    search_fields = ["subscriber__email_canonical", "message_id"]
    search_help_text = _("A subscriber's full email address, or a Message-ID (<…>).")
    list_select_related = ["subscriber", "report"]
    sortable_by = ["id", "created"]
    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice: too slow at 1M rows
    list_per_page = 100
    raw_id_fields = ["subscriber"]
    readonly_fields = [
        "summary", "subscriber", "report", "edition", "kind", "reason", "status", "attempts",
        "next_attempt_at", "claimed_at", "enqueued_at", "publish_failed_at", "last_error",
        "sent_at", "message_id", "downloaded_at", "link_version", "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["resend_report", "retry_failed", "cancel_pending", "revoke_links", "reissue_links"]

    def get_fieldsets(self, request: HttpRequest, obj: Delivery | None = None) -> Any:
        """What matters for the delivery's state: a one-line summary and what it is, then
        only the steps it went through (no row of empty dates), then its record, folded."""
        if obj is None:
            return super().get_fieldsets(request, obj)
        return [
            (None, {"fields": ["summary", "subscriber", "report", "edition", "kind", "reason"]}),
            (_("What happened"), {"fields": delivery_steps_shown(obj)}),
            (_("Record"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
        ]

    @admin.display(description=_("where it stands"))
    def summary(self, obj: Delivery) -> SafeString:
        return format_html('<p id="delivery-summary">{}</p>', delivery_summary(obj))

    def delete_model(self, request: HttpRequest, obj: Delivery) -> None:
        privacy.deliveries_delete(Delivery.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        """Deleting deliveries also deletes the PDFs stored for them (they hold the name)."""
        privacy.deliveries_delete(queryset)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """Exact matches only: ``<...>`` is a Message-ID, anything else a subscriber's
        address (found through the unique canonical index, then the deliveries' index)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("<"):
            return queryset.filter(message_id=term), False
        try:
            canonical = canonical_email(term)
        except ValidationError:
            return queryset.none(), False
        subscribers = Subscriber.objects.filter(email_canonical=canonical).values("pk")
        return queryset.filter(subscriber__in=subscribers), False

    @admin.display(description=_("subscriber"))
    def subscriber_email(self, obj: Delivery) -> str:
        return obj.subscriber.email

    @admin.display(description=_("what"))
    def what(self, obj: Delivery) -> SafeString:
        """The kind, and why it was sent (sign-up, resend, signed up again) under it."""
        return format_html(
            '{}<span class="backpain-quiet">{}</span>',
            obj.get_kind_display(),
            obj.get_reason_display(),
        )

    @admin.display(description=_("status"))
    def status_cell(self, obj: Delivery) -> SafeString | str:
        """The status, and how many attempts it took when there was more than one."""
        if obj.attempts <= 1:
            return obj.get_status_display()
        attempts = ngettext("%d attempt", "%d attempts", obj.attempts) % obj.attempts
        return format_html(
            '{}<span class="backpain-quiet">{}</span>', obj.get_status_display(), attempts
        )

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: Delivery) -> SafeString | str:
        return date_cell(obj.created_at)

    @admin.display(description=_("last error"))
    def short_error(self, obj: Delivery) -> SafeString | str:
        if not obj.last_error:
            return "—"
        text = obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")
        return format_html(
            '<span class="backpain-error" title="{}">{}</span>', obj.last_error, text
        )

    @admin.action(description=_("Resend the report (a new delivery)"), permissions=["resend"])
    def resend_report(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        subscribers = Subscriber.objects.filter(deliveries__in=queryset).distinct()
        report_resend(self, request, deliveries.deliveries_resend(subscribers))

    @admin.action(description=_("Retry the selected failed deliveries"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        skipped = deliveries.deliveries_retry_skipped(queryset)
        count = deliveries.deliveries_retry_failed(queryset)
        self.message_user(
            request,
            ngettext(
                "%d failed delivery queued again.", "%d failed deliveries queued again.", count
            )
            % count,
            messages.SUCCESS if count else messages.WARNING,
        )
        retry_skipped_report(self, request, skipped)

    @admin.action(description=_("Cancel the selected pending deliveries"), permissions=["change"])
    def cancel_pending(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries.deliveries_cancel_pending(queryset)
        self.message_user(
            request,
            ngettext("Cancelled %d pending delivery.", "Cancelled %d pending deliveries.", count)
            % count,
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description=_("Revoke the download links"), permissions=["change"])
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries.deliveries_links_revoke(queryset)
        self.message_user(
            request,
            ngettext(
                "Revoked the download link of %d delivery.",
                "Revoked the download links of %d deliveries.",
                count,
            )
            % count,
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Revoke the download links and send new ones"),
        permissions=["change", "resend"],
    )
    def reissue_links(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        deliveries.deliveries_links_revoke(queryset)
        self.resend_report(request, queryset)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("backpain_report.add_delivery")
