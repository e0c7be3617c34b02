"""Pieces shared by the model admins: messages, the CSV response."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.translation import ngettext

from ..export import export_filename, subscriber_csv_lines
from ..models import Subscriber
from ..operations import ResendResult


def report_resend(
    model_admin: admin.ModelAdmin, request: HttpRequest, result: ResendResult
) -> None:
    """Tell the member of staff how many deliveries a resend queued and skipped."""
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
    if result.suppressed:
        model_admin.message_user(
            request,
            ngettext(
                "Skipped %(n)d subscriber whose address is suppressed (bounced, complained or "
                "rejected): lift the suppression first to send to it.",
                "Skipped %(n)d subscribers whose addresses are suppressed (bounced, complained "
                "or rejected): lift the suppression first to send to them.",
                result.suppressed,
            )
            % {"n": result.suppressed},
            messages.WARNING,
        )


def csv_response(queryset: QuerySet[Subscriber]) -> StreamingHttpResponse:
    """The subscribers of ``queryset`` as a streamed CSV download (constant memory)."""
    response = StreamingHttpResponse(
        subscriber_csv_lines(queryset), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{export_filename()}"'
    response["Cache-Control"] = "private, no-store"
    return response
