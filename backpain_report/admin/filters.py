"""List filters for the subscriber and delivery lists: states, last status, date ranges."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, QueryDict
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from ..models import Delivery


class _StateFilter(admin.SimpleListFilter):
    """Yes / No on whether a timestamp field is set (``confirmed_at``, ``unsubscribed_at``)."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


class ConfirmedFilter(_StateFilter):
    title = _("confirmed")
    parameter_name = "confirmed"
    field = "confirmed_at"


class UnsubscribedFilter(_StateFilter):
    title = _("unsubscribed")
    parameter_name = "unsubscribed"
    field = "unsubscribed_at"


class SuppressedFilter(_StateFilter):
    title = _("suppressed (bounced or complained)")
    parameter_name = "suppressed"
    field = "suppressed_at"


class LastStatusFilter(admin.SimpleListFilter):
    """The status of the subscriber's latest delivery.

    Written as a semi-join, "has a delivery with that status and none after it", which
    PostgreSQL plans well both ways: from the list order (index on ``created_at``) probing each
    subscriber's deliveries when the status is common, from the deliveries (index on
    ``status``) when it is rare. (Comparing a correlated "latest status" subquery is estimated
    badly and ends up slow at a million rows.)
    """

    title = _("last delivery status")
    parameter_name = "last_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(Delivery.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        status = self.value()
        if status not in Delivery.Status.values:
            return queryset
        # (Two deliveries of one reader created in the same microsecond would both count.)
        newer = Delivery.objects.filter(
            subscriber=OuterRef("subscriber"), created_at__gt=OuterRef("created_at")
        )
        latest = Delivery.objects.filter(subscriber=OuterRef("pk"), status=status).filter(
            ~Exists(newer)
        )
        return queryset.filter(Exists(latest))


class SourceArticleFilter(admin.RelatedFieldListFilter):
    """The source article, with its empty choice named "(no article)" rather than a bare "-"
    (readers whose article was deleted, or who signed up through another page)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.empty_value_display = _("(no article)")  # type: ignore[assignment]


def titled_date_filter(title: str | Promise) -> type[admin.DateFieldListFilter]:
    """Django's date filter ("Today", "Past 7 days"...) headed ``title`` instead of the field's
    name (a field named "signed up" reads "By signed up")."""

    def __init__(self: admin.DateFieldListFilter, *args: Any, **kwargs: Any) -> None:
        admin.DateFieldListFilter.__init__(self, *args, **kwargs)
        self.title = title  # type: ignore[assignment]

    return type("TitledDateFieldListFilter", (admin.DateFieldListFilter,), {"__init__": __init__})


class DateRangeFilter(admin.ListFilter):
    """From / to dates (both included, in the current time zone) on one datetime field.

    Compares the field with aware datetimes, so an index on it is used.
    """

    template = "admin/backpain_report/date_range_filter.html"
    field = "created_at"

    def __init__(self, request: HttpRequest, params: dict, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        self.names = (f"{self.field}_from", f"{self.field}_to")
        self.values: dict[str, str] = {}
        for name in self.names:
            if name in params:
                value = params.pop(name)
                value = value[-1] if isinstance(value, list) else value
                if value:
                    self.values[name] = value
                    self.used_parameters[name] = value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.names)

    def _date(self, name: str) -> datetime.date | None:
        value = self.values.get(name)
        if not value:
            return None
        try:
            return datetime.date.fromisoformat(value)
        except ValueError as exc:
            raise IncorrectLookupParameters(f"{name}: not a date") from exc

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        tz = timezone.get_current_timezone()
        start, end = self._date(self.names[0]), self._date(self.names[1])
        if start:
            first = datetime.datetime.combine(start, datetime.time.min, tzinfo=tz)
            queryset = queryset.filter(**{f"{self.field}__gte": first})
        if end:
            after = end + datetime.timedelta(days=1)
            last = datetime.datetime.combine(after, datetime.time.min, tzinfo=tz)
            queryset = queryset.filter(**{f"{self.field}__lt": last})
        return queryset

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        others = changelist.get_query_string({PAGE_VAR: None}, remove=list(self.names))
        keep = QueryDict(others[1:])
        yield {
            "from_name": self.names[0],
            "to_name": self.names[1],
            "from_value": self.values.get(self.names[0], ""),
            "to_value": self.values.get(self.names[1], ""),
            "hidden": [(key, value) for key, values in keep.lists() for value in values],
            "clear_url": others,
            "selected": bool(self.values),
        }


def date_range_filter(field: str, title: str | Promise) -> type[DateRangeFilter]:
    """A :class:`DateRangeFilter` on ``field``, headed ``title``."""
    return type(f"DateRangeFilter_{field}", (DateRangeFilter,), {"field": field, "title": title})
