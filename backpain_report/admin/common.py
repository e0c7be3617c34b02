"""Pieces shared by the model admins: messages, the CSV response, list cells."""

from __future__ import annotations

import datetime

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.formats import date_format as localized_date
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from ..models import Subscriber
from ..rights.export import export_filename, subscriber_csv_lines
from ..services.deliveries import ResendResult, RetrySkipped


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
    unconfirmed_report(model_admin, request, result.unconfirmed)


def retry_skipped_report(
    model_admin: admin.ModelAdmin, request: HttpRequest, skipped: RetrySkipped
) -> None:
    """Tell staff how many failed deliveries retrying left alone, and why."""
    if skipped.total:
        model_admin.message_user(
            request,
            ngettext(
                "Left %(n)d failed delivery alone: unsubscribed %(unsubscribed)d, address "
                "suppressed %(suppressed)d, not confirmed (double opt-in) %(unconfirmed)d.",
                "Left %(n)d failed deliveries alone: unsubscribed %(unsubscribed)d, address "
                "suppressed %(suppressed)d, not confirmed (double opt-in) %(unconfirmed)d.",
                skipped.total,
            )
            % {
                "n": skipped.total,
                "unsubscribed": skipped.unsubscribed,
                "suppressed": skipped.suppressed,
                "unconfirmed": skipped.unconfirmed,
            },
            messages.WARNING,
        )


def unconfirmed_report(model_admin: admin.ModelAdmin, request: HttpRequest, count: int) -> None:
    """Tell staff how many readers got nothing because they have not confirmed (double opt-in)."""
    if count:
        model_admin.message_user(
            request,
            ngettext(
                "Skipped %(n)d subscriber who has not confirmed their address (double opt-in): "
                "they get only the confirmation request until they confirm.",
                "Skipped %(n)d subscribers who have not confirmed their addresses (double "
                "opt-in): they get only the confirmation request until they confirm.",
                count,
            )
            % {"n": count},
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


def date_cell(
    when: datetime.datetime | None, pattern: str = "j M Y", *, with_time: bool = False
) -> SafeString | str:
    """``when`` (local time) as a short ``<time>`` that never wraps, the full date and time in
    its tooltip; "—" when empty. Keeps list columns narrow. ``with_time`` adds the time
    (``H:i``) on a line of its own under the date."""
    if when is None:
        return "—"
    local = timezone.localtime(when) if timezone.is_aware(when) else when
    time = (
        format_html('<span class="backpain-quiet">{}</span>', date_format(local, "H:i"))
        if with_time
        else ""
    )
    return format_html(
        '<time class="backpain-date" datetime="{}" title="{}">{}</time>{}',
        local.isoformat(),
        localized_date(local, "DATETIME_FORMAT"),
        date_format(local, pattern),
        time,
    )
