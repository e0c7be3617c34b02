"""The funnel: the figures of the admin dashboard.

Page views are counters (:mod:`pageviews`): one row per (article, day), and one per (article,
day, source), nothing about the visitor. The other steps of the funnel are read from the rows
the app already keeps: sign-ups, confirmations, unsubscribes and suppressed addresses
(bounced, complained or rejected, by the day they were suppressed) from :class:`Subscriber`,
reports delivered and downloads from :class:`Delivery`. Everything is grouped by the
subscriber's source article and the day (in the current time zone).
"""

from __future__ import annotations

import datetime
import functools
import logging
import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Article, Delivery, FollowUpStep, PageView, SourceView, Subscriber
from .page.sources import SOURCE_FIELDS, source_label

logger = logging.getLogger(__name__)

#: The steps of the funnel, in order, as they appear on the dashboard.
STEPS = (
    "views", "signups", "confirmations", "delivered", "downloads", "unsubscribes", "suppressed",
)  # fmt: skip

#: Conversion rates shown: (name, numerator step, denominator step).
RATES = (
    ("signup_rate", "signups", "views"),
    ("confirm_rate", "confirmations", "signups"),
    ("delivery_rate", "delivered", "signups"),
    ("download_rate", "downloads", "delivered"),
    ("unsubscribe_rate", "unsubscribes", "delivered"),
)

DEFAULT_DAYS = 30

#: Steps that mean nothing when sign-ups need no confirmation (double opt-in off).
DOUBLE_OPT_IN_STEPS = ("confirmations",)


def funnel_steps(*, double_opt_in: bool) -> tuple[str, ...]:
    """The :data:`STEPS` worth showing: with single opt-in nobody confirms, so a confirmation
    count (and its rate, always 0 %) would read like a failure."""
    return tuple(s for s in STEPS if double_opt_in or s not in DOUBLE_OPT_IN_STEPS)


def funnel_rates(*, double_opt_in: bool) -> tuple[tuple[str, str, str], ...]:
    """The :data:`RATES` whose steps are both shown (see :func:`funnel_steps`)."""
    shown = funnel_steps(double_opt_in=double_opt_in)
    return tuple(rate for rate in RATES if rate[1] in shown and rate[2] in shown)


@dataclass
class FunnelRow:
    """The funnel's counts for one day or one article, with its conversion rates."""

    label: str
    key: object = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))

    def add(self, step: str, n: int) -> None:
        self.counts[step] += n

    @property
    def rates(self) -> dict[str, float | None]:
        """Each rate of :data:`RATES` as a fraction, None when its denominator is zero."""
        return {
            name: (self.counts[num] / self.counts[den] if self.counts[den] else None)
            for name, num, den in RATES
        }


@dataclass
class Funnel:
    """The dashboard's figures for ``start``..``end`` (both included)."""

    start: datetime.date
    end: datetime.date
    days: list[FunnelRow]
    articles: list[FunnelRow]
    total: FunnelRow
    #: One row per source (``utm_*`` or referring host, see :mod:`sources`): the page views
    #: counted from it (a counter, see :mod:`pageviews`) and the sign-ups that came from it.
    sources: list[FunnelRow] = field(default_factory=list)
    #: The totals of the period of the same length just before ``start``, to compare with.
    previous: FunnelRow = field(default_factory=lambda: FunnelRow(label="previous"))


def default_range(today: datetime.date | None = None) -> tuple[datetime.date, datetime.date]:
    """The last :data:`DEFAULT_DAYS` days, today included."""
    today = today or timezone.localdate()
    return today - datetime.timedelta(days=DEFAULT_DAYS - 1), today


def _bounds(start: datetime.date, end: datetime.date) -> tuple[datetime.datetime, ...]:
    tz = timezone.get_current_timezone()
    first = datetime.datetime.combine(start, datetime.time.min, tzinfo=tz)
    after = datetime.datetime.combine(end + datetime.timedelta(days=1), datetime.time.min, tz)
    return first, after


def _per_day(
    queryset: QuerySet, when: str, article: str, start: datetime.date, end: datetime.date
) -> Iterable[tuple[int | None, datetime.date, int]]:
    """``(article id, day, count)`` of ``queryset`` rows whose ``when`` lies in the range."""
    first, after = _bounds(start, end)
    return (
        queryset.filter(**{f"{when}__gte": first, f"{when}__lt": after})
        .annotate(day=TruncDate(when))
        .values_list(article, "day")
        .annotate(n=Count("pk"))
        .order_by()
    )


def funnel_counts(
    *, start: datetime.date, end: datetime.date, article_id: int | None = None
) -> dict[tuple[int | None, datetime.date], dict[str, int]]:
    """``{(article id, day): {step: count}}`` for every step of :data:`STEPS` (seven queries)."""
    subscribers = Subscriber.objects.all()
    reports = Delivery.objects.filter(kind=Delivery.Kind.REPORT)
    views = PageView.objects.filter(day__gte=start, day__lte=end)
    if article_id is not None:
        subscribers = subscribers.filter(source_article_id=article_id)
        reports = reports.filter(subscriber__source_article_id=article_id)
        views = views.filter(article_id=article_id)
    by_article = "subscriber__source_article_id"
    sources = {
        "signups": _per_day(subscribers, "created_at", "source_article_id", start, end),
        "confirmations": _per_day(subscribers, "confirmed_at", "source_article_id", start, end),
        "unsubscribes": _per_day(subscribers, "unsubscribed_at", "source_article_id", start, end),
        "suppressed": _per_day(subscribers, "suppressed_at", "source_article_id", start, end),
        "delivered": _per_day(
            reports.filter(status=Delivery.Status.SENT), "sent_at", by_article, start, end
        ),
        "downloads": _per_day(reports, "downloaded_at", by_article, start, end),
        "views": views.values_list("article_id", "day").annotate(n=Sum("views")).order_by(),
    }
    counts: dict[tuple[int | None, datetime.date], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(STEPS, 0)
    )
    for step, rows in sources.items():
        for article, day, n in rows:
            counts[(article, day)][step] += n
    return dict(counts)


def funnel(*, start: datetime.date, end: datetime.date, article_id: int | None = None) -> Funnel:
    """The funnel for ``start``..``end``: one row per day (every day, zeros included), one
    row per article that had any activity, and the total; optionally for one article only.

    The same queries also read the period of the same length just before ``start``: its
    totals are :attr:`Funnel.previous`, to compare with."""
    span = (end - start).days + 1
    previous_start = start - datetime.timedelta(days=max(span, 0))
    counts = funnel_counts(start=previous_start, end=end, article_id=article_id)
    previous = FunnelRow(label="previous")
    days: dict[datetime.date, FunnelRow] = {}
    for offset in range(max(span, 0)):
        day = start + datetime.timedelta(days=offset)
        days[day] = FunnelRow(label=day.isoformat(), key=day)
    articles: dict[int | None, FunnelRow] = {}
    total = FunnelRow(label="Total")
    for (article, day), steps in counts.items():
        if day < start:
            for step, n in steps.items():
                previous.add(step, n)
            continue
        article_row = articles.setdefault(article, FunnelRow(label="", key=article))
        for step, n in steps.items():
            if day in days:
                days[day].add(step, n)
            article_row.add(step, n)
            total.add(step, n)
    known = [key for key in articles if key]
    titles = dict(Article.objects.filter(pk__in=known).values_list("pk", "title"))
    for key, row in articles.items():
        row.label = titles.get(key, _("(no article)")) if key else _("(no article)")
    ordered = sorted(articles.values(), key=lambda r: (-r.counts["signups"], r.label))
    return Funnel(
        start=start,
        end=end,
        days=list(days.values()),
        articles=ordered,
        total=total,
        sources=funnel_sources(start=start, end=end, article_id=article_id),
        previous=previous,
    )


def _in_range(when: str, start: datetime.date, end: datetime.date) -> Q:
    first, after = _bounds(start, end)
    return Q(**{f"{when}__gte": first, f"{when}__lt": after})


def _by_source(queryset: QuerySet, prefix: str, steps: dict[str, Q]) -> Iterable[tuple]:
    """``(*source fields, count per step...)`` of ``queryset``: one query, each step counting
    the rows that match its condition."""
    any_step = functools.reduce(operator.or_, steps.values())
    return (
        queryset.filter(any_step)
        .values_list(*(prefix + name for name in SOURCE_FIELDS))
        .annotate(**{f"n_{step}": Count("pk", filter=q) for step, q in steps.items()})
        .order_by()
    )


def funnel_sources(
    *, start: datetime.date, end: datetime.date, article_id: int | None = None
) -> list[FunnelRow]:
    """The funnel per source (the same label, e.g. ``"(direct)"``, is one row): page views as
    the pages' beacons reported their source, and the steps after, by the source kept with each
    sign-up; most sign-ups first, then most views; optionally for one article. Three queries
    (source views, subscribers, deliveries)."""
    subscribers = Subscriber.objects.all()
    reports = Delivery.objects.filter(kind=Delivery.Kind.REPORT)
    views = SourceView.objects.filter(day__gte=start, day__lte=end)
    if article_id is not None:
        subscribers = subscribers.filter(source_article_id=article_id)
        reports = reports.filter(subscriber__source_article_id=article_id)
        views = views.filter(article_id=article_id)
    sent = Q(status=Delivery.Status.SENT)
    queries = (
        (
            subscribers,
            "",
            {
                "signups": _in_range("created_at", start, end),
                "confirmations": _in_range("confirmed_at", start, end),
                "unsubscribes": _in_range("unsubscribed_at", start, end),
            },
        ),
        (
            reports,
            "subscriber__",
            {
                "delivered": sent & _in_range("sent_at", start, end),
                "downloads": _in_range("downloaded_at", start, end),
            },
        ),
    )
    rows: dict[str, FunnelRow] = {}

    def add(values: Iterable[str], counts: dict[str, int]) -> None:
        label = source_label(dict(zip(SOURCE_FIELDS, values, strict=True)))
        row = rows.setdefault(label, FunnelRow(label=label, key=label))
        for step, n in counts.items():
            row.add(step, n)

    for found in views.values_list(*SOURCE_FIELDS).annotate(n=Sum("views")).order_by():
        add(found[: len(SOURCE_FIELDS)], {"views": found[-1]})
    for queryset, prefix, steps in queries:
        for found in _by_source(queryset, prefix, steps):
            values, counts = found[: len(SOURCE_FIELDS)], found[len(SOURCE_FIELDS) :]
            add(values, dict(zip(steps, counts, strict=True)))
    return sorted(rows.values(), key=lambda r: (-r.counts["signups"], -r.counts["views"], r.label))


@dataclass
class FollowUpFunnelRow:
    """One follow-up step's figures for the period: follow-ups sent (by the day sent), failed
    (by the day they were queued), and readers who unsubscribed after this step was their
    latest follow-up (sent before they unsubscribed, and no later step sent before that)."""

    step_id: int
    report: str
    position: int
    language: str
    delay_days: int
    subject: str
    is_active: bool
    sent: int = 0
    failed: int = 0
    unsubscribed: int = 0

    @property
    def unsubscribe_rate(self) -> float | None:
        """Unsubscribed after this step, as a fraction of those it was sent to."""
        return self.unsubscribed / self.sent if self.sent else None


def funnel_followups(
    *, start: datetime.date, end: datetime.date, article_id: int | None = None
) -> list[FollowUpFunnelRow]:
    """One row per follow-up step (of the article's report, or of every report with steps),
    in sequence order; none, in one query, when there are no steps.

    Two queries: the steps with their counts (for each step, its follow-ups sent in the period
    by the ``sent_at`` index and those queued in it that failed by the ``(status,
    created_at)`` one); and, for each reader who unsubscribed in the period (the
    ``unsubscribed_at`` index), the step of their latest follow-up sent before that (one
    lookup on the ``(subscriber, created_at)`` index each). Cost grows with the period's
    rows, not with the list."""
    first, after = _bounds(start, end)
    followups = Delivery.objects.filter(step=OuterRef("pk"), kind=Delivery.Kind.FOLLOWUP)
    subscribers = Subscriber.objects.filter(unsubscribed_at__gte=first, unsubscribed_at__lt=after)
    steps = FollowUpStep.objects.all()
    if article_id is not None:
        steps = steps.filter(report__articles=article_id)
        followups = followups.filter(subscriber__source_article_id=article_id)
        subscribers = subscribers.filter(source_article_id=article_id)

    def count(**conditions: object) -> Coalesce:
        rows = followups.filter(**conditions).order_by().values("step")
        return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")[:1]), 0)

    counted = (
        steps.annotate(
            n_sent=count(status=Delivery.Status.SENT, sent_at__gte=first, sent_at__lt=after),
            n_failed=count(
                status=Delivery.Status.FAILED, created_at__gte=first, created_at__lt=after
            ),
        )
        .select_related("report")
        .order_by("report__title", "report_id", "language", "position", "pk")
    )
    rows = {
        step.pk: FollowUpFunnelRow(
            step_id=step.pk,
            report=step.report.title,
            position=step.position,
            language=step.language,
            delay_days=step.delay_days,
            subject=step.subject,
            is_active=step.is_active,
            sent=step.n_sent,
            failed=step.n_failed,
        )
        for step in counted
    }
    if not rows:
        return []
    latest = Delivery.objects.filter(
        subscriber=OuterRef("pk"),
        kind=Delivery.Kind.FOLLOWUP,
        status=Delivery.Status.SENT,
        sent_at__lte=OuterRef("unsubscribed_at"),
    ).order_by("-sent_at", "-pk")
    after_step = (
        subscribers.annotate(last_step=Subquery(latest.values("step_id")[:1]))
        .filter(last_step__isnull=False)
        .values_list("last_step")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for step_id, n in after_step:
        if step_id in rows:
            rows[step_id].unsubscribed = n
    return list(rows.values())
