"""Subscribers as CSV, streamed: constant memory and the first bytes at once, at any size.

:func:`subscriber_csv_lines` turns any subscriber queryset (e.g. the admin changelist's
filtered one) into CSV lines, reading the database in chunks through ``.iterator()`` with
``values_list`` (no model instances). Cells that a spreadsheet would run as a formula are
neutralised.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterator
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from ..models import Delivery, Subscriber

CHUNK_SIZE = 2000

#: (CSV header, queryset value) of each column, in order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("email", "email"),
    ("name", "name"),
    ("source_article", "source_article__title"),
    ("signed_up_at", "created_at"),
    ("confirmed_at", "confirmed_at"),
    ("unsubscribed_at", "unsubscribed_at"),
    ("consent_version", "consent_version"),
    # Where the reader came from (sources.py): a spreadsheet splits sign-ups by these.
    ("utm_source", "utm_source"),
    ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"),
    ("referrer_host", "referrer_host"),
    ("last_delivery_status", "last_delivery_status"),
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Echo:
    """A file-like object whose ``write`` returns what it was given (for ``csv.writer``)."""

    def write(self, value: str) -> str:
        return value


def last_delivery_status() -> Subquery:
    """The status of a subscriber's latest delivery, for ``.annotate()`` (one index lookup)."""
    latest = Delivery.objects.filter(subscriber=OuterRef("pk")).order_by("-created_at", "-pk")
    return Subquery(latest.values("status")[:1])


def with_last_status(queryset: QuerySet[Subscriber]) -> QuerySet[Subscriber]:
    """``queryset`` annotated with ``last_delivery_status`` (unless it already is)."""
    if "last_delivery_status" in queryset.query.annotations:
        return queryset
    return queryset.annotate(last_delivery_status=last_delivery_status())


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def subscriber_csv_lines(
    queryset: QuerySet[Subscriber], *, chunk_size: int = CHUNK_SIZE
) -> Iterator[str]:
    """The header line, then one CSV line per subscriber of ``queryset``, read in chunks."""
    writer = csv.writer(Echo())
    yield writer.writerow([header for header, _value in COLUMNS])
    rows = with_last_status(queryset).values_list(*[value for _header, value in COLUMNS])
    for row in rows.iterator(chunk_size=chunk_size):
        yield writer.writerow([_cell(value) for value in row])


def export_filename(today: datetime.date | None = None) -> str:
    """``subscribers-YYYY-MM-DD.csv``."""
    return f"subscribers-{(today or datetime.date.today()).isoformat()}.csv"
