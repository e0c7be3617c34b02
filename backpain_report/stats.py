"""The funnel: page views counted per article and day, and the figures of the admin dashboard.

Page views are a privacy-friendly counter: one row per (article, day) incremented in the
database, no cookie, no address, nothing about the visitor; requests whose user agent looks like
a bot are not counted. The other steps of the funnel are read from the rows the app already
keeps: sign-ups, confirmations and unsubscribes from :class:`Subscriber`, reports delivered and
downloads from :class:`Delivery`. Everything is grouped by the subscriber's source article and
the day (in the current time zone).
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.utils import timezone

from .models import Article, Delivery, PageView, Subscriber

#: User agents that are not counted as readers. An empty user agent is not counted either.
BOT_RE = re.compile(r"bot|crawl|spider|slurp|preview|headless|curl|wget|python-requests", re.I)

#: The steps of the funnel, in order, as they appear on the dashboard.
STEPS = ("views", "signups", "confirmations", "delivered", "downloads", "unsubscribes")

#: Conversion rates shown: (name, numerator step, denominator step).
RATES = (
    ("signup_rate", "signups", "views"),
    ("confirm_rate", "confirmations", "signups"),
    ("delivery_rate", "delivered", "signups"),
    ("download_rate", "downloads", "delivered"),
    ("unsubscribe_rate", "unsubscribes", "delivered"),
)

DEFAULT_DAYS = 30


def is_bot(user_agent: str) -> bool:
    """True when ``user_agent`` is empty or looks like a crawler, preview fetcher or script."""
    return not user_agent.strip() or BOT_RE.search(user_agent) is not None


def page_view_record(
    *, article: Article, user_agent: str, day: datetime.date | None = None
) -> bool:
    """Count one view of ``article`` today (or on ``day``); False when the visitor is a bot.

    One UPDATE ... SET views = views + 1, or an INSERT the first time of the day; two
    concurrent first views both count (the loser of the INSERT race updates instead).
    """
    if is_bot(user_agent):
        return False
    day = day or timezone.localdate()
    rows = PageView.objects.filter(article=article, day=day)
    if rows.update(views=F("views") + 1):
        return True
    try:
        with transaction.atomic():
            PageView.objects.create(article=article, day=day, views=1)
    except IntegrityError:
        rows.update(views=F("views") + 1)
    return True


def page_view_from_request(request: HttpRequest, *, article: Article) -> bool:
    """Count a GET of an article page (the view's one line); HEAD and bots are not counted."""
    if request.method != "GET":
        return False
    return page_view_record(article=article, user_agent=request.headers.get("User-Agent", ""))


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
    """``{(article id, day): {step: count}}`` for every step of :data:`STEPS` (six queries)."""
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
    row per article that had any activity, and the total; optionally for one article only."""
    counts = funnel_counts(start=start, end=end, article_id=article_id)
    span = (end - start).days + 1
    days: dict[datetime.date, FunnelRow] = {}
    for offset in range(max(span, 0)):
        day = start + datetime.timedelta(days=offset)
        days[day] = FunnelRow(label=day.isoformat(), key=day)
    articles: dict[int | None, FunnelRow] = {}
    total = FunnelRow(label="Total")
    for (article, day), steps in counts.items():
        article_row = articles.setdefault(article, FunnelRow(label="", key=article))
        for step, n in steps.items():
            if day in days:
                days[day].add(step, n)
            article_row.add(step, n)
            total.add(step, n)
    known = [key for key in articles if key]
    titles = dict(Article.objects.filter(pk__in=known).values_list("pk", "title"))
    for key, row in articles.items():
        row.label = titles.get(key, "(no article)") if key else "(no article)"
    ordered = sorted(articles.values(), key=lambda r: (-r.counts["signups"], r.label))
    return Funnel(start=start, end=end, days=list(days.values()), articles=ordered, total=total)
