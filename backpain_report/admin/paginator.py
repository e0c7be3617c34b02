"""A paginator for tables of a million rows: no full ``COUNT(*)`` on a page load."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.utils.functional import cached_property

#: Below this many rows (PostgreSQL's estimate), an unfiltered list is counted exactly.
ESTIMATE_ABOVE = 50_000
#: A filtered list is counted up to this many rows, and shown as "more than" beyond it.
COUNT_CAP = 10_000


def table_estimate(model: type[Model], *, using: str) -> int | None:
    """PostgreSQL's estimate of the rows in ``model``'s table (``pg_class.reltuples``).

    None on other databases, or when the table was never analysed.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class LargeTablePaginator(Paginator):
    """Counts cheaply: an estimate for a large unfiltered table, a capped count otherwise.

    ``count_is_estimate`` and ``count_is_capped`` tell the template what the count means.
    """

    estimate_above = ESTIMATE_ABOVE
    count_cap = COUNT_CAP
    count_is_estimate = False
    count_is_capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.where:
            estimate = table_estimate(queryset.model, using=queryset.db)
            if estimate is not None and estimate > self.estimate_above:
                self.count_is_estimate = True
                return estimate
        counted = queryset.order_by().values("pk")[: self.count_cap + 1].count()
        if counted > self.count_cap:
            self.count_is_capped = True
            return self.count_cap
        return counted
