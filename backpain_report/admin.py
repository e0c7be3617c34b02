"""Staff pages: articles, reports, subscribers and their deliveries."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import deliveries, operations, privacy
from .models import Article, Delivery, Report, Subscriber


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["title", "edition", "updated_at"]
    search_fields = ["title", "slug"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["created_at", "updated_at"]


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "original_publication_date", "report", "published_at"]
    list_filter = ["status", "published_at"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["report"]
    date_hierarchy = "published_at"


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["report", "edition", "reason", "status", "attempts", "sent_at", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "name",
        "source_article",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    list_filter = [
        ("created_at", admin.DateFieldListFilter),
        ("unsubscribed_at", admin.EmptyFieldListFilter),
        ("confirmed_at", admin.EmptyFieldListFilter),
        "source_article",
    ]
    search_fields = ["email_canonical", "email", "name"]
    list_select_related = ["source_article"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "email_canonical",
        "source_article",
        "source_url",
        "consent_text",
        "consent_version",
        "consented_at",
        "consent_ip",
        "consent_user_agent",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "email", "email_canonical", "source_article", "source_url"]}),
        (
            _("Consent record"),
            {
                "fields": [
                    "consent_text",
                    "consent_version",
                    "consented_at",
                    "consent_ip",
                    "consent_user_agent",
                    "created_at",
                    "confirmed_at",
                    "unsubscribed_at",
                ]
            },
        ),
    ]
    inlines = [DeliveryInline]
    actions = ["resend_report", "export_data", "erase_data"]

    @admin.action(
        description=_("Export the selected subscribers' data (JSON)"), permissions=["view"]
    )
    def export_data(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> HttpResponse:
        data = [
            privacy.subscriber_export(subscriber=s)
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
        description=_("Resend the report to the selected subscribers"), permissions=["add_delivery"]
    )
    def resend_report(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        result = operations.resend_to_subscribers(queryset)
        _report_resend(self, request, result)

    def has_add_delivery_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("backpain_report.add_delivery")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "subscriber",
        "report",
        "edition",
        "kind",
        "reason",
        "status",
        "attempts",
        "sent_at",
        "downloaded_at",
        "short_error",
        "created_at",
    ]
    list_filter = [
        "status",
        "kind",
        "reason",
        ("created_at", admin.DateFieldListFilter),
        ("sent_at", admin.DateFieldListFilter),
        "report",
    ]
    search_fields = ["subscriber__email_canonical", "subscriber__name", "message_id"]
    list_select_related = ["subscriber", "report"]
    date_hierarchy = "created_at"
    raw_id_fields = ["subscriber"]
    readonly_fields = [
        "subscriber", "report", "edition", "kind", "reason", "status", "attempts",
        "next_attempt_at", "claimed_at", "enqueued_at", "publish_failed_at", "last_error",
        "sent_at", "message_id", "downloaded_at", "link_version", "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["resend_report", "retry_failed", "revoke_links", "reissue_links"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("last error"))
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")

    @admin.action(description=_("Resend the report (a new delivery)"), permissions=["resend"])
    def resend_report(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        subscribers = Subscriber.objects.filter(deliveries__in=queryset).distinct()
        result = operations.resend_to_subscribers(subscribers)
        _report_resend(self, request, result)

    @admin.action(description=_("Retry the selected failed deliveries"), permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = operations.retry_failed(queryset)
        self.message_user(
            request,
            ngettext(
                "%d failed delivery queued again.", "%d failed deliveries queued again.", count
            )
            % count,
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description=_("Revoke the download links"), permissions=["change"])
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = deliveries.download_links_revoke(queryset)
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
        deliveries.download_links_revoke(queryset)
        self.resend_report(request, queryset)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("backpain_report.add_delivery")


def _report_resend(model_admin: admin.ModelAdmin, request: HttpRequest, result) -> None:
    model_admin.message_user(
        request,
        ngettext(
            "Queued a new delivery for %(queued)d subscriber.",
            "Queued new deliveries for %(queued)d subscribers.",
            result.queued,
        )
        % {"queued": result.queued},
        messages.SUCCESS,
    )
    if result.skipped:
        model_admin.message_user(
            request,
            ngettext(
                "Skipped %(skipped)d unsubscribed subscriber.",
                "Skipped %(skipped)d unsubscribed subscribers.",
                result.skipped,
            )
            % {"skipped": result.skipped},
            messages.WARNING,
        )
