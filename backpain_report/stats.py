"""The funnel: page views counted per article and day, and the figures of the admin dashboard.

Page views are a privacy-friendly counter: one row per (article, day), no cookie, no address,
nothing about the visitor, counted in a shared cache (Redis, Memcached) and flushed to the row
every minute by the sweep, or counted in the database directly; requests whose user agent looks like
a bot are not counted. The other steps of the funnel are read from the rows the app already
keeps: sign-ups, confirmations, unsubscribes and suppressed addresses (bounced, complained or
rejected, by the day they were suppressed) from :class:`Subscriber`, reports delivered and
downloads from :class:`Delivery`. Everything is grouped by the subscriber's source article and
the day (in the current time zone).
"""

from __future__ import annotations

import datetime
import functools
import logging
import operator
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from .conf import app_settings
from .models import Article, Delivery, PageView, Subscriber
from .sources import SOURCE_FIELDS, source_label
from .throttling import counts_atomically, is_plain_redis, redis_count

logger = logging.getLogger(__name__)

#: User agents that are not counted as readers. An empty user agent is not counted either.
BOT_RE = re.compile(r"bot|crawl|spider|slurp|preview|headless|curl|wget|python-requests", re.I)

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


def is_bot(user_agent: str) -> bool:
    """True when ``user_agent`` is empty or looks like a crawler, preview fetcher or script."""
    return not user_agent.strip() or BOT_RE.search(user_agent) is not None


#: Seconds a page-view counter lives in the cache before it must have been flushed.
COUNTER_TTL = 3 * 24 * 3600
#: Days back the flush looks for counters (the sweep runs every minute; this covers outages).
FLUSH_DAYS = 3
FLUSH_LOCK = "backpain_report:views:flush-lock"
FLUSH_LOCK_TTL = 60


def _counter_cache() -> BaseCache | None:
    """The cache to count page views in: a shared one that counts atomically (Redis,
    Memcached), the throttles' ``THROTTLE_CACHE``; None means: count in the database."""
    try:
        cache = caches[app_settings.THROTTLE_CACHE]
    except InvalidCacheBackendError:  # an unknown alias (check E015): count in the database
        return None
    if isinstance(cache, LocMemCache | DummyCache) or not counts_atomically(cache):
        return None  # per process, or no atomic incr: counts would be lost
    return cache


def _counter_key(article_id: int, day: datetime.date) -> str:
    return f"backpain_report:views:{article_id}:{day.isoformat()}"


def _views_add(article_id: int, day: datetime.date, n: int) -> None:
    """Add ``n`` views to the (article, day) row: one UPDATE, or an INSERT the first time."""
    rows = PageView.objects.filter(article_id=article_id, day=day)
    if rows.update(views=F("views") + n):
        return
    try:
        with transaction.atomic():
            PageView.objects.create(article_id=article_id, day=day, views=n)
    except IntegrityError:  # a concurrent first view of the day won the INSERT
        rows.update(views=F("views") + n)


def page_view_record(
    *, article: Article, user_agent: str, day: datetime.date | None = None
) -> bool:
    """Count one view of ``article`` today (or on ``day``); False when the visitor is a bot.

    With a shared, atomic cache (Redis, Memcached) the view is one ``INCR`` there (one round
    trip on Redis, with the counter's expiry set on the first view) and
    :func:`page_views_flush` (run by the sweep every minute, and by the funnel page) moves the
    counts into the database; otherwise, or if the cache fails, it is one UPDATE (an INSERT
    the first time of the day). Two concurrent first views both count.
    """
    if is_bot(user_agent):
        return False
    day = day or timezone.localdate()
    cache = _counter_cache()
    if cache is not None:
        key = _counter_key(article.pk, day)
        try:
            if is_plain_redis(cache):
                redis_count(cache, key, COUNTER_TTL)  # type: ignore[arg-type]
                return True
            try:
                cache.incr(key)
            except ValueError:  # the first view of the day on this cache
                if not cache.add(key, 1, timeout=COUNTER_TTL):
                    cache.incr(key)
            return True
        except Exception:
            logger.warning(
                "Page-view counter cache unavailable; counting in the database", exc_info=True
            )
    _views_add(article.pk, day, 1)
    return True


def page_views_flush(*, today: datetime.date | None = None) -> int:
    """Move the page views counted in the cache into the database; return how many moved.

    Each counter is decremented by what was read (atomically), so views counted meanwhile stay
    for the next flush and none is counted twice; views whose row could not be written go back
    to their counter. A no-op when views are counted in the database.
    """
    cache = _counter_cache()
    if cache is None:
        return 0
    # One flush at a time (the sweep on several hosts, the funnel page): two flushes reading the
    # same counts would each add them. The lock expires by itself should a flush die; a flush
    # that outlived it stops before taking another counter, and never releases another's lock.
    token = uuid.uuid4().hex
    try:
        if not cache.add(FLUSH_LOCK, token, timeout=FLUSH_LOCK_TTL):
            return 0
    except Exception:
        logger.warning("Page-view counter cache unavailable; flushing later", exc_info=True)
        return 0
    try:
        return _flush(cache, today or timezone.localdate(), token)
    finally:
        try:
            if cache.get(FLUSH_LOCK) == token:
                cache.delete(FLUSH_LOCK)
        except Exception:
            logger.warning("Could not release the page-view flush lock", exc_info=True)


def _flush(cache: BaseCache, today: datetime.date, token: str) -> int:
    days = [today - datetime.timedelta(days=n) for n in range(FLUSH_DAYS)]
    keys = {
        _counter_key(pk, day): (pk, day)
        for pk in Article.objects.values_list("pk", flat=True)
        for day in days
    }
    moved = 0
    try:
        counts = cache.get_many(list(keys))
    except Exception:
        logger.warning("Page-view counter cache unavailable; flushing later", exc_info=True)
        return 0
    for key, count in counts.items():
        if not count or count < 0:
            continue
        try:
            if cache.get(FLUSH_LOCK) != token:
                logger.warning("The page-view flush outlived its lock; the rest waits")
                break
            cache.decr(key, count)
        except Exception:
            logger.warning("Could not take %s page views from the cache", count, exc_info=True)
            continue
        article_id, day = keys[key]
        try:
            _views_add(article_id, day, int(count))
        except BaseException:  # the row was not written: the views go back for the next flush
            _views_give_back(cache, key, int(count))
            raise
        moved += int(count)
    return moved


def _views_give_back(cache: BaseCache, key: str, count: int) -> None:
    """Add ``count`` views back to the counter ``key`` (a flush took them, then failed)."""
    try:
        try:
            cache.incr(key, count)
        except ValueError:  # the counter expired meanwhile
            if not cache.add(key, count, timeout=COUNTER_TTL):
                cache.incr(key, count)
    except Exception:
        logger.error("Lost %s page views: neither written nor given back", count, exc_info=True)


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
    #: One row per source (``utm_*`` or referring host, see :mod:`sources`) of the sign-ups;
    #: page views are not split (nothing about a visitor who did not sign up is kept).
    sources: list[FunnelRow] = field(default_factory=list)


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
        row.label = titles.get(key, _("(no article)")) if key else _("(no article)")
    ordered = sorted(articles.values(), key=lambda r: (-r.counts["signups"], r.label))
    return Funnel(
        start=start,
        end=end,
        days=list(days.values()),
        articles=ordered,
        total=total,
        sources=funnel_sources(start=start, end=end, article_id=article_id),
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
    """The funnel's steps after the page view, one row per source of the sign-ups (the same
    label, e.g. ``"(direct)"``, is one row), most sign-ups first; optionally for one article.
    Two queries (subscribers, deliveries)."""
    subscribers = Subscriber.objects.all()
    reports = Delivery.objects.filter(kind=Delivery.Kind.REPORT)
    if article_id is not None:
        subscribers = subscribers.filter(source_article_id=article_id)
        reports = reports.filter(subscriber__source_article_id=article_id)
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
    for queryset, prefix, steps in queries:
        for found in _by_source(queryset, prefix, steps):
            values, counts = found[: len(SOURCE_FIELDS)], found[len(SOURCE_FIELDS) :]
            label = source_label(dict(zip(SOURCE_FIELDS, values, strict=True)))
            row = rows.setdefault(label, FunnelRow(label=label, key=label))
            for step, n in zip(steps, counts, strict=True):
                row.add(step, n)
    return sorted(rows.values(), key=lambda r: (-r.counts["signups"], r.label))
