"""Sign-ups a worker has not processed yet: read-only, so staff can see a stuck queue.

A row normally lives for well under a second. Rows that stay (no worker running, the broker
down) are re-published by the sweep; one with "publish failed" set is waiting for it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import PendingSignup
from .common import date_cell


@admin.register(PendingSignup)
class PendingSignupAdmin(admin.ModelAdmin):
    list_display = ["email", "article", "created", "queue"]
    list_select_related = ["article"]
    list_filter = [("publish_failed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=email_canonical"]
    ordering = ["created_at", "id"]
    readonly_fields = [field.name for field in PendingSignup._meta.fields]

    @admin.display(description=_("received"), ordering="created_at")
    def created(self, obj: PendingSignup) -> SafeString | str:
        return date_cell(obj.created_at, "j M H:i:s")  # rows normally live under a second

    @admin.display(description=_("queue"))
    def queue(self, obj: PendingSignup) -> SafeString | str | Promise:
        """Where the sign-up stands on its way to a worker."""
        if obj.publish_failed_at:
            return format_html(
                '{}<span class="backpain-quiet">{}</span>',
                _("Publish failed"),
                date_cell(obj.publish_failed_at, "j M H:i:s"),
            )
        return _("Queued") if obj.enqueued_at else _("Not queued yet")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sign-ups come from the form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
