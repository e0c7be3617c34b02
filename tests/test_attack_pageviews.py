"""Attacks found by the review of issue 21: page views (docs, "Page views").

- A source that keeps being viewed is listed again after every flush (the flush takes its
  counter down to 0, the next view's INCR returns 1 and is taken for "the first view of a source
  that day"): one steady source uses up MAX_SOURCES slots in MAX_SOURCES flushes (200 minutes
  with the sweep every minute), and from then on every source's views count as "(other
  sources)".
- A beacon or noscript image with no Fetch Metadata and no Origin, whose Referer is an invalid
  IPv6 literal, is a 500 (crossorigin.same_origin_only calls urlsplit unguarded).
"""

from __future__ import annotations

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client

from backpain_report.models import PageView, SourceView
from backpain_report.page import pageviews

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
BEACON = "/back-pain/views/"
PIXEL = "/back-pain/views/pixel.gif"


@pytest.fixture
def shared_counter(monkeypatch):
    """A cache that counts atomically standing in for Redis (as tests/test_page_views.py)."""
    counter = LocMemCache("attack-page-views", {})
    counter.clear()
    monkeypatch.setattr(pageviews, "_counter_cache", lambda: counter)
    return counter


def test_a_steady_source_is_listed_once_not_once_per_flush(article, shared_counter, monkeypatch):
    """Two real sources a day, a flush between views (the sweep runs every minute): no view may
    end up in "(other sources)" and the source index must not fill up."""
    monkeypatch.setattr(pageviews, "MAX_SOURCES", 3)
    for _ in range(5):
        pageviews.page_view_record(
            article=article, user_agent=BROWSER, source={"utm_source": "news"}
        )
        pageviews.page_views_flush()
    pageviews.page_view_record(article=article, user_agent=BROWSER, source={"utm_source": "forum"})
    pageviews.page_views_flush()
    rows = dict(SourceView.objects.values_list("utm_source", "views"))
    assert rows == {"news": 5, "forum": 1}
    assert PageView.objects.get().views == 6
    slots = [k for k in shared_counter._cache if ":source:" in k]
    assert len(slots) == 2


@pytest.mark.parametrize("referer", ["http://[::1", "http://[not-an-address]/page", "https://[/"])
def test_a_hostile_referer_on_the_beacon_or_the_image_is_no_500(article, referer):
    """No Sec-Fetch-Site and no Origin: same_origin_only falls back to the Referer."""
    client = Client(raise_request_exception=False)
    headers = {"User-Agent": BROWSER, "Referer": referer}
    beacon = client.post(BEACON, {"article": article.slug}, headers=headers)
    assert beacon.status_code == 204
    image = client.get(f"{PIXEL}?article={article.slug}", headers=headers)
    assert image.status_code == 200 and image["Content-Type"] == "image/gif"
    assert not PageView.objects.exists()
