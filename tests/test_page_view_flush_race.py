"""Issue 22, suspected: two page-view flushes interleaved around the flush lock's expiry.

Flush A passes its lock check just before the lock expires; flush B takes the lock and reads
the counters before A's decrement. Each then takes the counts it read: the same views must
reach the database once. The interleaving is made deterministic by a counter cache that runs
flush B at the moment flush A decrements its first counter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import Sum

from backpain_report.models import PageView, SourceView
from backpain_report.page import pageviews

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


class RacingCache(LocMemCache):
    """A counter cache (atomic ``incr``/``decr``, as Redis) that runs ``before_decr`` once,
    right before the next ``decr`` takes effect."""

    def __init__(self) -> None:
        super().__init__("page-views-race", {})
        self.before_decr: Callable[[], None] | None = None

    def decr(self, key, delta=1, version=None):
        hook, self.before_decr = self.before_decr, None
        if hook is not None:
            hook()
        return super().decr(key, delta, version)


@pytest.fixture
def racing(monkeypatch) -> RacingCache:
    cache = RacingCache()
    cache.clear()
    monkeypatch.setattr(pageviews, "_counter_cache", lambda: cache)
    return cache


def views_in_database() -> tuple[int, int]:
    pages = PageView.objects.aggregate(n=Sum("views"))["n"] or 0
    sources = SourceView.objects.aggregate(n=Sum("views"))["n"] or 0
    return pages, sources


def record(article, n: int, **source: str) -> None:
    for _ in range(n):
        pageviews.page_view_record(article=article, user_agent=BROWSER, source=source)


def test_a_flush_whose_lock_expires_before_its_decrement_adds_no_view_twice(article, racing):
    record(article, 5, utm_source="news")
    moved_by_b: list[int] = []

    def lock_expires_and_flush_b_runs() -> None:
        racing.delete(pageviews.FLUSH_LOCK)  # A's lock expires after A checked it
        moved_by_b.append(pageviews.page_views_flush())  # B: lock, read, decrement, write

    racing.before_decr = lock_expires_and_flush_b_runs
    moved_by_a = pageviews.page_views_flush()
    assert moved_by_b == [5]
    assert moved_by_a + moved_by_b[0] == 5
    assert views_in_database() == (5, 5)
    assert pageviews.page_views_flush() == 0  # nothing left over, nothing owed
    record(article, 2, utm_source="news")
    assert pageviews.page_views_flush() == 2  # later views are counted, none swallowed
    assert views_in_database() == (7, 7)


def test_views_counted_between_the_two_flushes_reads_are_moved_once(article, racing):
    record(article, 5, utm_source="news")

    def lock_expires_new_views_and_flush_b() -> None:
        racing.delete(pageviews.FLUSH_LOCK)
        record(article, 3, utm_source="news")  # counted after A read 5
        pageviews.page_views_flush()  # B reads 8 and takes them

    racing.before_decr = lock_expires_new_views_and_flush_b
    pageviews.page_views_flush()
    pageviews.page_views_flush()
    assert views_in_database() == (8, 8)


def test_a_flush_that_lost_its_lock_before_its_check_stops(article, racing, monkeypatch):
    """The case the lock check already covered: the lock gone before A's check, A stops and
    B moves the views."""
    record(article, 4, utm_source="news")
    real_get = racing.get
    state = {"expired": False}

    def get(key, default=None, version=None):
        if key == pageviews.FLUSH_LOCK and not state["expired"]:
            state["expired"] = True
            racing.delete(pageviews.FLUSH_LOCK)
        return real_get(key, default, version)

    monkeypatch.setattr(racing, "get", get)
    assert pageviews.page_views_flush() == 0
    assert pageviews.page_views_flush() == 4
    assert views_in_database() == (4, 4)
