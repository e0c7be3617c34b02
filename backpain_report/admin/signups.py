"""Sign-ups a worker has not processed yet: read-only, so staff can see a stuck queue.

A row normally lives for well under a second. Rows that stay (no worker running, the broker
down) are re-published by the sweep; one with "publish failed" set is waiting for it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..models import PendingSignup


@admin.register(PendingSignup)
class PendingSignupAdmin(admin.ModelAdmin):
    list_display = ["created_at", "email", "article", "enqueued_at", "publish_failed_at"]
    list_filter = [("publish_failed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=email_canonical"]
    ordering = ["created_at", "id"]
    readonly_fields = [field.name for field in PendingSignup._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sign-ups come from the form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
