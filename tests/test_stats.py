import datetime

import pytest

from backpain_report import stats
from backpain_report.models import Article, Delivery, PageView, Subscriber
from backpain_report.page import pageviews

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
DAY = datetime.date(2026, 3, 10)


def at(day: datetime.date, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("agent", "bot"),
    [
        (BROWSER, False),
        ("", True),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", True),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", True),
        ("Slackbot-LinkExpanding 1.0", True),
        ("Mozilla/5.0 HeadlessChrome/120.0", True),
        ("curl/8.5.0", True),
        ("python-requests/2.32", True),
        ("Wget/1.21", True),
        ("facebookexternalhit/1.1 Yahoo! Slurp", True),
    ],
)
def test_bot_rule(agent, bot):
    assert pageviews.is_bot(agent) is bot


def test_page_view_counter_increments_one_row_per_day(article):
    for _ in range(3):
        assert pageviews.page_view_record(article=article, user_agent=BROWSER, day=DAY)
    assert not pageviews.page_view_record(article=article, user_agent="Googlebot", day=DAY)
    pageviews.page_view_record(article=article, user_agent=BROWSER, day=DAY + datetime.timedelta(1))
    assert list(PageView.objects.order_by("day").values_list("day", "views")) == [
        (DAY, 3),
        (DAY + datetime.timedelta(1), 1),
    ]


def test_funnel_figures_against_known_data(article, make_subscriber, make_delivery):
    other = Article.objects.create(title="Other", slug="other", body="x", report=article.report)
    day2 = DAY + datetime.timedelta(days=1)
    PageView.objects.create(article=article, day=DAY, views=100)
    PageView.objects.create(article=article, day=day2, views=50)
    PageView.objects.create(article=other, day=DAY, views=10)
    readers = [make_subscriber() for _ in range(4)]
    outsider = make_subscriber(source_article=other)
    Subscriber.objects.filter(pk__in=[s.pk for s in readers]).update(created_at=at(DAY))
    Subscriber.objects.filter(pk=outsider.pk).update(created_at=at(DAY))
    Subscriber.objects.filter(pk__in=[s.pk for s in readers[:3]]).update(confirmed_at=at(DAY, 13))
    Subscriber.objects.filter(pk=readers[0].pk).update(unsubscribed_at=at(day2))
    for reader in readers[:2]:
        make_delivery(
            reader, status=Delivery.Status.SENT, sent_at=at(DAY, 14), downloaded_at=at(day2)
        )
    make_delivery(readers[2], status=Delivery.Status.FAILED)
    make_delivery(outsider, status=Delivery.Status.SENT, sent_at=at(day2))
    make_delivery(readers[3], kind=Delivery.Kind.CONFIRMATION, status="sent", sent_at=at(DAY))
    # Outside the range: not counted.
    PageView.objects.create(article=article, day=DAY - datetime.timedelta(1), views=999)

    funnel = stats.funnel(start=DAY, end=day2)
    assert [row.label for row in funnel.days] == [DAY.isoformat(), day2.isoformat()]
    assert funnel.days[0].counts == {
        "views": 110, "signups": 5, "confirmations": 3, "delivered": 2, "downloads": 0,
        "unsubscribes": 0, "suppressed": 0,
    }  # fmt: skip
    assert funnel.days[1].counts == {
        "views": 50, "signups": 0, "confirmations": 0, "delivered": 1, "downloads": 2,
        "unsubscribes": 1, "suppressed": 0,
    }  # fmt: skip
    first = funnel.articles[0]
    assert first.label == article.title
    assert first.counts["signups"] == 4 and first.counts["views"] == 150
    assert first.rates["signup_rate"] == pytest.approx(4 / 150)
    assert first.rates["confirm_rate"] == pytest.approx(3 / 4)
    assert first.rates["download_rate"] == pytest.approx(1.0)
    assert funnel.total.counts["signups"] == 5 and funnel.total.counts["delivered"] == 3
    only_other = stats.funnel(start=DAY, end=day2, article_id=other.pk)
    assert only_other.total.counts == {
        "views": 10, "signups": 1, "confirmations": 0, "delivered": 1, "downloads": 0,
        "unsubscribes": 0, "suppressed": 0,
    }  # fmt: skip
    empty = stats.funnel(start=day2, end=day2, article_id=other.pk)
    assert empty.total.rates["signup_rate"] is None


def test_default_range_is_the_last_30_days():
    start, end = stats.default_range(DAY)
    assert end == DAY and (end - start).days == 29


def test_views_counted_in_a_shared_cache_reach_the_database_once(article, shared_counter):
    from backpain_report.models import PageView
    from backpain_report.page.pageviews import page_view_record, page_views_flush

    for _ in range(5):
        assert page_view_record(article=article, user_agent="Mozilla/5.0")
    assert not PageView.objects.exists()  # no write per request
    assert page_views_flush() == 5
    page_view_record(article=article, user_agent="Mozilla/5.0")  # counted meanwhile
    assert page_views_flush() == 1
    assert page_views_flush() == 0  # nothing counted twice
    assert PageView.objects.get(article=article).views == 6


def test_a_failing_counter_cache_counts_in_the_database(article, monkeypatch):
    from backpain_report.models import PageView
    from backpain_report.page import pageviews

    class Broken:
        def incr(self, *args, **kwargs):
            raise ConnectionError("cache down")

    monkeypatch.setattr(pageviews, "_counter_cache", lambda: Broken())
    assert pageviews.page_view_record(article=article, user_agent="Mozilla/5.0")
    assert PageView.objects.get(article=article).views == 1


def test_a_per_process_or_non_atomic_cache_is_never_used_for_counting(settings, tmp_path):
    from backpain_report.page.pageviews import _counter_cache

    for backend in (
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
        "django.core.cache.backends.filebased.FileBasedCache",
        "django.core.cache.backends.db.DatabaseCache",
    ):
        settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": str(tmp_path)}}
        assert _counter_cache() is None, backend
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://x",
        }
    }
    assert _counter_cache() is not None


def test_the_sweep_and_the_funnel_flush_the_counters(article, shared_counter, admin_client):
    from backpain_report.models import PageView
    from backpain_report.page.pageviews import page_view_record
    from backpain_report.tasks import sweep_deliveries

    page_view_record(article=article, user_agent="Mozilla/5.0")
    sweep_deliveries()
    page_view_record(article=article, user_agent="Mozilla/5.0")
    admin_client.get("/admin/backpain_report/pageview/")
    assert PageView.objects.get(article=article).views == 2


def test_two_flushes_at_once_never_count_a_view_twice(article, shared_counter):
    from backpain_report.models import PageView
    from backpain_report.page.pageviews import page_view_record, page_views_flush

    for _ in range(5):
        page_view_record(article=article, user_agent="Mozilla/5.0")
    real_get_many = shared_counter.get_many
    other_flush: list[int] = []

    def get_many_then_another_flush_runs(keys, *args, **kwargs):
        counts = real_get_many(keys, *args, **kwargs)
        if not other_flush:  # the second flusher reads the same counters meanwhile
            other_flush.append(0)
            other_flush[0] = page_views_flush()
        return counts

    shared_counter.get_many = get_many_then_another_flush_runs
    first = page_views_flush()
    assert other_flush[0] + first == 5
    assert PageView.objects.get(article=article).views == 5


def test_a_flush_whose_database_write_fails_loses_no_view(article, shared_counter, monkeypatch):
    """The counter is taken before the row is written: if the write fails (the database down
    during the sweep), the views go back to the counter for the next flush."""
    from django.db import OperationalError

    from backpain_report.models import PageView
    from backpain_report.page import pageviews

    for _ in range(3):
        pageviews.page_view_record(article=article, user_agent="Mozilla/5.0")
    real_add = pageviews._views_add

    def database_down(*args, **kwargs):
        raise OperationalError("database down")

    monkeypatch.setattr(pageviews, "_views_add", database_down)
    with pytest.raises(OperationalError):
        pageviews.page_views_flush()
    monkeypatch.setattr(pageviews, "_views_add", real_add)
    pageviews.page_view_record(article=article, user_agent="Mozilla/5.0")
    assert pageviews.page_views_flush() == 4
    assert PageView.objects.get(article=article).views == 4


def test_a_flush_that_outlived_its_lock_never_counts_a_view_twice(article, shared_counter):
    """The flush lock expires by itself (a flush stuck on a slow database for a minute): a
    second flush then reads the same counters meanwhile, and still no view is added twice."""
    from backpain_report.models import PageView
    from backpain_report.page import pageviews

    for _ in range(5):
        pageviews.page_view_record(article=article, user_agent="Mozilla/5.0")
    real_get_many = shared_counter.get_many
    other_flush: list[int] = []

    def get_many_then_the_lock_expires(keys, *args, **kwargs):
        counts = real_get_many(keys, *args, **kwargs)
        if not other_flush:
            shared_counter.delete(pageviews.FLUSH_LOCK)  # expired
            other_flush.append(0)
            pageviews.page_view_record(article=article, user_agent="Mozilla/5.0")  # meanwhile
            other_flush[0] = pageviews.page_views_flush()
        return counts

    shared_counter.get_many = get_many_then_the_lock_expires
    first = pageviews.page_views_flush()
    shared_counter.get_many = real_get_many
    assert first + other_flush[0] + pageviews.page_views_flush() == 6
    assert PageView.objects.get(article=article).views == 6
