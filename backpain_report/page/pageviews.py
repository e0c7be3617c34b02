"""Page views: counters per article, day and source, nothing about the visitor.

A view is counted when a browser loads the article page: its beacon or its ``<noscript>``
image reaches :class:`~backpain_report.views.PageViewView`, which calls
:func:`page_view_record` with the page's source (``utm_*`` and referring host, see
:mod:`sources`). Requests whose user agent looks like a bot are not counted.

With a shared cache that counts atomically (Redis, Memcached: ``THROTTLE_CACHE``) a view is
one ``INCR`` of its (article, day, source) counter; the first view of a source that day also
lists the source under the (article, day), so that :func:`page_views_flush` (run by the sweep
every minute, and by the funnel page) finds every counter and moves its count into the
database: :class:`PageView` (per article and day) and :class:`SourceView` (per source).
At most :data:`MAX_SOURCES` sources are listed per article and day; views from further
sources count as :data:`OTHER_SOURCE`, so made-up ``utm_*`` values cannot fill the cache or
the database. Without such a cache (or when it fails) a view is written to both rows at once.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping

from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..conf import app_settings
from ..models import Article, PageView, SourceView
from ..rights.throttling import counts_atomically, is_plain_redis, redis_count
from .sources import SOURCE_FIELDS, Source, empty_source, source_clean

logger = logging.getLogger(__name__)

#: User agents that are not counted as readers. An empty user agent is not counted either.
BOT_RE = re.compile(r"bot|crawl|spider|slurp|preview|headless|curl|wget|python-requests", re.I)

#: Seconds a page-view counter lives in the cache before it must have been flushed.
COUNTER_TTL = 3 * 24 * 3600
#: Days back the flush looks for counters (the sweep runs every minute; this covers outages).
FLUSH_DAYS = 3
FLUSH_LOCK = "backpain_report:views:flush-lock"
FLUSH_LOCK_TTL = 60
#: Sources listed per article and day; views from more sources count as OTHER_SOURCE.
MAX_SOURCES = 200
#: Where the views from the sources past MAX_SOURCES are counted.
OTHER_SOURCE: Source = {**empty_source(), "utm_source": "(other sources)"}


def is_bot(user_agent: str) -> bool:
    """True when ``user_agent`` is empty or looks like a crawler, preview fetcher or script."""
    return not user_agent.strip() or BOT_RE.search(user_agent) is not None


def source_key(source: Mapping[str, str]) -> str:
    """The digest that names a source in counters and in :class:`SourceView`."""
    text = "\x00".join(source.get(name, "") for name in SOURCE_FIELDS)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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


def _prefix(article_id: int, day: datetime.date) -> str:
    return f"backpain_report:views:{article_id}:{day.isoformat()}"


def _counter_key(article_id: int, day: datetime.date, key: str) -> str:
    return f"{_prefix(article_id, day)}:{key}"


def _listed_key(article_id: int, day: datetime.date) -> str:
    """How many sources the (article, day) lists."""
    return f"{_prefix(article_id, day)}:sources"


def _listed_marker_key(article_id: int, day: datetime.date, key: str) -> str:
    """Set while the source ``key`` is listed under the (article, day)."""
    return f"{_prefix(article_id, day)}:listed:{key}"


def _slot_key(article_id: int, day: datetime.date, n: int) -> str:
    """The ``n``-th source listed under the (article, day): ``(source_key, source)``."""
    return f"{_prefix(article_id, day)}:source:{n}"


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


def _source_views_add(article_id: int, day: datetime.date, source: Source, n: int) -> None:
    """Add ``n`` views to the (article, day, source) row."""
    key = source_key(source)
    rows = SourceView.objects.filter(article_id=article_id, day=day, source_key=key)
    if rows.update(views=F("views") + n):
        return
    try:
        with transaction.atomic():
            SourceView.objects.create(
                article_id=article_id, day=day, source_key=key, views=n, **source
            )
    except IntegrityError:
        rows.update(views=F("views") + n)


def _views_write(article_id: int, day: datetime.date, source: Source | None, n: int) -> None:
    """Add ``n`` views to both rows, together or not at all (``source`` None: a counter of
    the release before sources were counted, the article's row only)."""
    with transaction.atomic():
        _views_add(article_id, day, n)
        if source is not None:
            _source_views_add(article_id, day, source, n)


def _incr(cache: BaseCache, key: str, n: int = 1) -> int:
    """Add ``n`` to the counter ``key`` (made with :data:`COUNTER_TTL`); its new value."""
    if n == 1 and is_plain_redis(cache):
        return redis_count(cache, key, COUNTER_TTL)  # type: ignore[arg-type]
    try:
        return cache.incr(key, n)
    except ValueError:  # the first count of this key
        if cache.add(key, n, timeout=COUNTER_TTL):
            return n
        return cache.incr(key, n)


def _count_in_cache(cache: BaseCache, article_id: int, day: datetime.date, source: Source) -> None:
    key = source_key(source)
    counter = _counter_key(article_id, day, key)
    if _incr(cache, counter) != 1:
        return  # a source already listed today
    # A new counter, or one a flush took down to 0: list the source only the first time.
    marker = _listed_marker_key(article_id, day, key)
    if not cache.add(marker, 1, timeout=COUNTER_TTL):
        return
    listed = _incr(cache, _listed_key(article_id, day))
    if listed <= MAX_SOURCES:
        cache.set(_slot_key(article_id, day, listed), (key, source), timeout=COUNTER_TTL)
        return
    # Too many sources today: this view counts with the others. (A view of the same new
    # source counted in between is dropped with the counter: only past MAX_SOURCES.)
    cache.delete(counter)
    cache.delete(marker)  # not listed: its next view counts with the others again
    _incr(cache, _counter_key(article_id, day, source_key(OTHER_SOURCE)))


def page_view_record(
    *,
    article: Article,
    user_agent: str,
    day: datetime.date | None = None,
    source: Mapping[str, object] | None = None,
) -> bool:
    """Count one view of ``article`` today (or on ``day``) from ``source`` (cleaned here; none:
    a direct visit); False when the visitor is a bot.

    One ``INCR`` in the shared cache (see the module's text); without one, or if it fails, one
    write of the (article, day) row and one of the (article, day, source) row.
    """
    if is_bot(user_agent):
        return False
    day = day or timezone.localdate()
    clean = source_clean(source or {})
    cache = _counter_cache()
    if cache is not None:
        try:
            _count_in_cache(cache, article.pk, day, clean)
            return True
        except Exception:
            logger.warning(
                "Page-view counter cache unavailable; counting in the database", exc_info=True
            )
    _views_write(article.pk, day, clean, 1)
    return True


def page_views_flush(*, today: datetime.date | None = None) -> int:
    """Move the page views counted in the cache into the database; return how many moved.

    Each counter is decremented by what was read (atomically), so views counted meanwhile stay
    for the next flush; a decrement that finds fewer views than were read (another flush took
    them meanwhile) takes only those (:func:`_counter_take`), so none is counted twice. Views
    whose rows could not be written go back to their counter. A no-op when views are counted
    in the database.
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


Counter = tuple[int, datetime.date, Source | None]


def _counters(cache: BaseCache, today: datetime.date) -> dict[str, Counter]:
    """Every counter key that may hold views, with its (article id, day, source)."""
    days = [today - datetime.timedelta(days=n) for n in range(FLUSH_DAYS)]
    pairs = [(pk, day) for pk in Article.objects.values_list("pk", flat=True) for day in days]
    listed = cache.get_many([_listed_key(pk, day) for pk, day in pairs])
    slots: dict[str, tuple[int, datetime.date]] = {}
    counters: dict[str, Counter] = {}
    for pk, day in pairs:
        counters[_prefix(pk, day)] = (pk, day, None)  # the previous release's counter
        count = listed.get(_listed_key(pk, day)) or 0
        for n in range(1, min(int(count), MAX_SOURCES) + 1):
            slots[_slot_key(pk, day, n)] = (pk, day)
        other = _counter_key(pk, day, source_key(OTHER_SOURCE))
        counters[other] = (pk, day, dict(OTHER_SOURCE))
    for slot, value in cache.get_many(list(slots)).items():
        try:
            key, source = value
        except (TypeError, ValueError):
            continue
        pk, day = slots[slot]
        counters[_counter_key(pk, day, str(key))] = (pk, day, source_clean(source))
    return counters


def _flush(cache: BaseCache, today: datetime.date, token: str) -> int:
    try:
        counters = _counters(cache, today)
        counts = cache.get_many(list(counters))
    except Exception:
        logger.warning("Page-view counter cache unavailable; flushing later", exc_info=True)
        return 0
    moved = 0
    for key, count in counts.items():
        if not count or count < 0:
            continue
        try:
            if cache.get(FLUSH_LOCK) != token:
                logger.warning("The page-view flush outlived its lock; the rest waits")
                break
            count = _counter_take(cache, key, int(count))
        except Exception:
            logger.warning("Could not take %s page views from the cache", count, exc_info=True)
            continue
        if not count:
            continue
        article_id, day, source = counters[key]
        try:
            _views_write(article_id, day, source, int(count))
        except BaseException:  # the rows were not written: the views go back for the next flush
            _views_give_back(cache, key, int(count))
            raise
        moved += int(count)
    return moved


def _counter_take(cache: BaseCache, key: str, count: int) -> int:
    """Take up to ``count`` views (the count read) from the counter ``key``; how many were
    still there to take.

    The decrement is the read that counts: a counter below zero after it means another flush
    took some of these views since they were read (a flush that outlived its lock, and the one
    that took the lock over), and only what was still there is ours; the rest goes back. A
    counter never holds more than the views nobody has taken, so no view is taken twice.
    (Redis counts below zero; Memcached stops a decrement at zero, so there an overdraw cannot
    be seen and the flush lock alone keeps two flushes apart.)"""
    left = cache.decr(key, count)
    taken = max(0, min(count, left + count))
    if taken < count:
        _views_give_back(cache, key, count - taken)  # our overdraw, undone
    return taken


def _views_give_back(cache: BaseCache, key: str, count: int) -> None:
    """Add ``count`` views back to the counter ``key`` (a flush took them, then failed)."""
    try:
        _incr(cache, key, count)
    except Exception:
        logger.error("Lost %s page views: neither written nor given back", count, exc_info=True)
