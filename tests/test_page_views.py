"""Page views counted by the page's beacon and its noscript image, per article and per source
(docs, "Page views")."""

from __future__ import annotations

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backpain_report import stats
from backpain_report.models import Article, PageView, SourceView
from backpain_report.page import pageviews

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
SAME_ORIGIN = {"User-Agent": BROWSER, "Sec-Fetch-Site": "same-origin"}
BEACON = "/back-pain/views/"
PIXEL = "/back-pain/views/pixel.gif"


def _views() -> int:
    return PageView.objects.aggregate(n=Sum("views"))["n"] or 0


def _beacon(article: Article, headers: dict[str, str] | None = None, **source: str):
    return Client().post(
        BEACON,
        {"article": article.slug, **source},
        headers=SAME_ORIGIN if headers is None else headers,
    )


def test_the_page_itself_counts_nothing_the_beacon_counts_one(client, article):
    url = article.get_absolute_url()
    html = client.get(url, headers={"User-Agent": BROWSER}).content.decode()
    client.head(url, headers={"User-Agent": BROWSER})
    assert _views() == 0  # a plain HTTP client or a HEAD: not counted
    assert f'data-bpr-article="{article.slug}"' in html and f'data-bpr-views="{BEACON}"' in html
    assert f'<noscript><img class="bpr-pixel" src="{PIXEL}?article={article.slug}"' in html
    response = _beacon(article)
    assert response.status_code == 204 and not response.content
    assert response["Cache-Control"] == "no-store" and not response.cookies
    assert _views() == 1 and PageView.objects.get().day == timezone.localdate()


def test_the_noscript_image_counts_a_get_not_a_head(article):
    image = Client().get(f"{PIXEL}?article={article.slug}", headers=SAME_ORIGIN)
    assert image.status_code == 200 and image["Content-Type"] == "image/gif"
    assert image.content.startswith(b"GIF89a") and image["Cache-Control"] == "no-store"
    head = Client().head(f"{PIXEL}?article={article.slug}", headers=SAME_ORIGIN)
    assert _views() == 1
    # The same answer as the GET's, without the body (it was a 405).
    assert head.status_code == 200 and head["Content-Type"] == "image/gif"
    assert head["Cache-Control"] == "no-store" and not head.content


@pytest.mark.parametrize(
    "headers",
    [
        {"User-Agent": BROWSER, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"User-Agent": BROWSER, "Sec-Fetch-Site": "same-site"},
        {"User-Agent": BROWSER, "Sec-Fetch-Site": "none"},
        {"User-Agent": BROWSER, "Origin": "https://evil.example"},
        {"User-Agent": BROWSER, "Referer": "https://evil.example/page"},
        {"User-Agent": BROWSER},  # no browser's headers at all
        {"User-Agent": "Googlebot/2.1", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},  # no user agent
    ],
)
def test_views_from_other_sites_bots_and_plain_clients_are_not_counted(article, headers):
    """The answer is the same 204, counted or not."""
    assert _beacon(article, headers).status_code == 204
    assert Client().get(f"{PIXEL}?article={article.slug}", headers=headers).status_code == 200
    assert _views() == 0


def test_an_older_browser_without_fetch_metadata_counts_by_origin_or_referer(article):
    own = {"User-Agent": BROWSER, "Origin": "http://testserver"}
    assert _beacon(article, own).status_code == 204
    referer = {"User-Agent": BROWSER, "Referer": "http://testserver" + article.get_absolute_url()}
    Client().get(f"{PIXEL}?article={article.slug}", headers=referer)
    assert _views() == 2


@pytest.mark.parametrize("slug", ["", "no-such-article", "x" * 500, "drafted"])
def test_unknown_or_unpublished_articles_count_nothing(article, slug):
    Article.objects.create(title="Draft", slug="drafted", body="x", report=article.report)
    response = Client().post(BEACON, {"article": slug}, headers=SAME_ORIGIN)
    assert response.status_code == 204 and _views() == 0


def test_other_methods_are_405(article):
    for method in ("put", "delete", "patch"):
        assert getattr(Client(), method)(BEACON).status_code == 405


def test_views_are_counted_per_source_and_the_funnel_shows_a_rate_per_source(
    article, make_subscriber
):
    for _ in range(3):
        _beacon(article, utm_source="news", utm_medium="email")
    _beacon(article, referrer_host="forum.example.net")
    _beacon(article)  # a direct visit
    own = {"referrer_host": "testserver"}
    _beacon(article, **own)  # the site's own host is no source
    make_subscriber(utm_source="news", utm_medium="email")
    rows = {(v.utm_source, v.referrer_host): v.views for v in SourceView.objects.order_by("pk")}
    assert rows == {("news", ""): 3, ("", "forum.example.net"): 1, ("", ""): 2}
    today = timezone.localdate()
    funnel = stats.funnel(start=today, end=today)
    assert funnel.total.counts["views"] == 6
    by_label = {row.label: row for row in funnel.sources}
    assert list(by_label) == ["news / email", "(direct)", "forum.example.net"]
    assert by_label["news / email"].counts["views"] == 3
    assert by_label["news / email"].rates["signup_rate"] == pytest.approx(1 / 3)
    assert by_label["forum.example.net"].rates["signup_rate"] == 0


def test_the_noscript_image_takes_the_utm_of_the_page_from_its_referer(article):
    page = "http://testserver" + article.get_absolute_url() + "?utm_source=print&utm_medium=qr"
    headers = {"User-Agent": BROWSER, "Sec-Fetch-Site": "same-origin", "Referer": page}
    Client().get(f"{PIXEL}?article={article.slug}", headers=headers)
    assert SourceView.objects.get().utm_source == "print"


def test_hostile_source_values_are_cleaned_and_never_an_error(article):
    response = _beacon(
        article,
        utm_source='<script>alert("x")</script>' * 50,
        utm_medium="\x00\r\n",
        referrer_host="not a host",
    )
    assert response.status_code == 204
    view = SourceView.objects.get()
    assert "<" not in view.utm_source and len(view.utm_source) <= 100
    assert view.utm_medium == "" and view.referrer_host == ""


def test_sources_counted_in_the_cache_are_flushed_once_each(article, shared_counter):
    for n in range(6):
        pageviews.page_view_record(
            article=article, user_agent=BROWSER, source={"utm_source": f"s{n % 3}"}
        )
    assert not SourceView.objects.exists() and not PageView.objects.exists()
    assert pageviews.page_views_flush() == 6
    assert pageviews.page_views_flush() == 0
    assert dict(SourceView.objects.values_list("utm_source", "views")) == {
        "s0": 2,
        "s1": 2,
        "s2": 2,
    }
    assert PageView.objects.get().views == 6


def test_made_up_sources_past_the_limit_count_as_other_sources(
    article, shared_counter, monkeypatch
):
    """An attacker inventing utm values cannot fill the cache or the database: past
    MAX_SOURCES a day, views count under one "(other sources)" row; no view is lost."""
    monkeypatch.setattr(pageviews, "MAX_SOURCES", 3)
    for n in range(10):
        pageviews.page_view_record(
            article=article, user_agent=BROWSER, source={"utm_source": f"made-up-{n}"}
        )
    pageviews.page_view_record(
        article=article, user_agent=BROWSER, source={"utm_source": "made-up-0"}
    )
    assert pageviews.page_views_flush() == 11
    rows = dict(SourceView.objects.values_list("utm_source", "views"))
    assert rows == {"made-up-0": 2, "made-up-1": 1, "made-up-2": 1, "(other sources)": 7}
    assert PageView.objects.get().views == 11
    slots = [k for k in shared_counter._cache if ":source:" in k]
    assert len(slots) == 3


def test_counters_of_the_previous_release_are_still_flushed(article, shared_counter):
    """A rolling deploy: the release before counted per (article, day) without a source."""
    day = timezone.localdate()
    shared_counter.set(f"backpain_report:views:{article.pk}:{day.isoformat()}", 4)
    pageviews.page_view_record(article=article, user_agent=BROWSER)
    assert pageviews.page_views_flush() == 5
    assert PageView.objects.get().views == 5
    assert SourceView.objects.get().views == 1  # the old views had no source


def test_the_admin_funnel_shows_views_and_a_rate_per_source(admin_client, article):
    _beacon(article, utm_source="news")
    _beacon(article, utm_source="news")
    page = admin_client.get(reverse("admin:backpain_report_pageview_changelist")).content
    html = page.decode()
    table = html[html.index('id="funnel-sources"') :]
    table = table[: table.index("</table>")]
    assert "news" in table and ">2<" in table


def test_views_counted_before_sources_show_per_article_and_day_only(article, admin_client):
    """Docs: views of the release before (a PageView row and no SourceView) are in the
    per-article and per-day figures, and in no source's row."""
    today = timezone.localdate()
    PageView.objects.create(article=article, day=today, views=7)
    _beacon(article, utm_source="news")
    funnel = stats.funnel(start=today, end=today)
    assert funnel.total.counts["views"] == 8 and funnel.days[-1].counts["views"] == 8
    assert {row.label: row.counts["views"] for row in funnel.sources} == {"news": 1}
    page = admin_client.get(reverse("admin:backpain_report_pageview_changelist")).content
    assert b"views counted before this release have no source" in page
