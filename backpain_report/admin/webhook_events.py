"""Webhook events (the outbox rows), read-only: what went where and what came back, with the
body as sent; retrying failed ones needs ``change_webhookevent``. Nobody adds or edits one."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import WebhookEvent
from ..services import webhooks
from ..webhooks.events import EventType
from .common import date_cell
from .paginator import LargeTablePaginator

Status = WebhookEvent.Status
#: Events still to go: waiting for a worker or being sent now.
BACKLOG = [Status.PENDING, Status.SENDING]
#: An event's way to its endpoint, in the order it happens.
EVENT_STEP_FIELDS = (
    "status", "attempts", "last_status_code", "last_error", "next_attempt_at", "claimed_at",
    "enqueued_at", "publish_failed_at", "sent_at",
)  # fmt: skip


def events_retry_report(
    model_admin: admin.ModelAdmin, request: HttpRequest, events: QuerySet[WebhookEvent]
) -> None:
    """Retry the failed ones among ``events`` and say how many went and how many stayed."""
    skipped = webhooks.webhook_events_retry_skipped(events)
    count = webhooks.webhook_events_retry(events)
    model_admin.message_user(
        request,
        ngettext("%d failed event queued again.", "%d failed events queued again.", count) % count,
        messages.SUCCESS if count else messages.WARNING,
    )
    if skipped:
        model_admin.message_user(
            request,
            ngettext(
                "Left %d failed event alone: its endpoint is switched off or its subscriber's "
                "data was erased.",
                "Left %d failed events alone: their endpoint is switched off or their "
                "subscriber's data was erased.",
                skipped,
            )
            % skipped,
            messages.WARNING,
        )


class EventTypeFilter(admin.SimpleListFilter):
    title = _("event")
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(choice.value, choice.value) for choice in EventType]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """The outbox of webhook events, read-only: what went where, and what came back."""

    # Five columns, as the deliveries: the endpoint under the event, the attempts and the last
    # HTTP status under the status.
    list_display = ["event_cell", "status_cell", "short_error", "created", "delivered"]
    list_display_links = ["event_cell"]
    list_filter = ["status", EventTypeFilter, "endpoint"]
    list_select_related = ["endpoint"]
    search_fields = ["=webhook_id"]
    search_help_text = _("A webhook id (msg_…), exactly.")
    sortable_by = ["created"]
    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 100
    actions = ["retry_failed"]

    def get_fieldsets(self, request: HttpRequest, obj: WebhookEvent | None = None) -> Any:
        """What it is and its body, then only the steps it went through (no row of empty
        dates), then its record, folded."""
        steps = ["status", "attempts"]
        steps += [
            name for name in EVENT_STEP_FIELDS[2:] if getattr(obj, name, None) not in (None, "")
        ]
        return [
            (
                None,
                {"fields": ["endpoint", "event_type", "webhook_id", "occurred_at", "body_json"]},
            ),
            (_("What happened"), {"fields": steps}),
            (
                _("Record"),
                {
                    "fields": ["subscriber_ref", "personal", "created_at", "updated_at"],
                    "classes": ["collapse"],
                },
            ),
        ]

    readonly_fields = [
        "endpoint", "event_type", "webhook_id", "occurred_at", "body_json", "status", "attempts",
        "last_status_code", "last_error", "next_attempt_at", "claimed_at", "enqueued_at",
        "publish_failed_at", "sent_at", "subscriber_ref", "personal", "created_at", "updated_at",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events come from the changes they report

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nothing on an event's page is editable; ``change`` only allows retrying."""
        return obj is None and super().has_change_permission(request)

    @admin.display(description=_("event"))
    def event_cell(self, obj: WebhookEvent) -> SafeString:
        return format_html(
            '{}<span class="backpain-quiet">{}</span>', obj.event_type, obj.endpoint.name
        )

    @admin.display(description=_("status"))
    def status_cell(self, obj: WebhookEvent) -> SafeString:
        """The status; under it the attempts and the last HTTP status, when there were any."""
        notes = [ngettext("%d attempt", "%d attempts", obj.attempts) % obj.attempts]
        if obj.last_status_code:
            notes.append(f"HTTP {obj.last_status_code}")
        return format_html(
            '{}<span class="backpain-quiet">{}</span>',
            obj.get_status_display(),
            " · ".join(notes),
        )

    @admin.display(description=_("body (JSON)"))
    def body_json(self, obj: WebhookEvent) -> SafeString | str:
        if not obj.body:
            return str(_("— (erased with the subscriber's personal data)"))
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html('<pre class="backpain-json">{}</pre>', text)

    @admin.display(description=_("last error"))
    def short_error(self, obj: WebhookEvent) -> SafeString | str:
        if not obj.last_error:
            return "—"
        text = obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")
        return format_html(
            '<span class="backpain-error" title="{}">{}</span>', obj.last_error, text
        )

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, obj: WebhookEvent) -> SafeString | str:
        return date_cell(obj.created_at, with_time=True)

    @admin.display(description=_("delivered"))
    def delivered(self, obj: WebhookEvent) -> SafeString | str:
        return date_cell(obj.sent_at, with_time=True)

    @admin.action(description=_("Retry the selected failed events"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        events_retry_report(self, request, queryset)


__all__ = ["BACKLOG", "EventTypeFilter", "WebhookEventAdmin", "events_retry_report"]
