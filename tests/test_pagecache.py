"""The article page is the same bytes for every reader, kept once and served from any cache
(docs, "Caching the article page")."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.forms.renderers import DjangoTemplates
from django.test import Client, override_settings
from django.test.signals import template_rendered
from django.utils.safestring import mark_safe

from backpain_report.models import Article
from backpain_report.page import pagecache
from backpain_report.services.content import report_save

from .docs_text import ROOT
from .test_i18n import LOCALE_MIDDLEWARE

pytestmark = pytest.mark.django_db

PUBLIC = "public, max-age={}, stale-while-revalidate=0"


@pytest.fixture
def renders():
    """The article page's renders (Django's test signal, sent for every template render)."""
    seen: list[str] = []

    def record(sender, template, context, **kwargs):
        if template.name == "backpain_report/article_detail.html":
            seen.append(template.name)

    template_rendered.connect(record, dispatch_uid="test-pagecache-renders")
    yield seen
    template_rendered.disconnect(dispatch_uid="test-pagecache-renders")


def _page_template(tmp_path, name: str, text: str, settings) -> None:
    path = tmp_path / "backpain_report" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]


def test_every_reader_gets_the_same_bytes_marked_public_without_a_cookie(article, renders):
    url = article.get_absolute_url()
    ann = Client(headers={"User-Agent": "Mozilla/5.0", "Accept-Language": "en"})
    bob = Client(headers={"Referer": "https://news.example.com/x?u=1"})
    first = ann.get(url + "?utm_source=newsletter&utm_campaign=spring")
    bob.cookies["sessionid"] = "no-such-session-key-0123456789"
    second = bob.get(url)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert len(renders) == 1  # rendered once for both
    for response in (first, second):
        assert response["Cache-Control"] == PUBLIC.format(300)
        assert not response.cookies and "Set-Cookie" not in response
        assert "cookie" not in response.get("Vary", "").lower()
        assert response["ETag"].startswith('"') and response["Last-Modified"]
        assert int(response["Age"]) >= 0
    html = first.content.decode()
    assert "csrfmiddlewaretoken" not in html and "newsletter" not in html


def test_no_cache_serves_the_page_stale_while_it_fetches_a_fresh_one(client, article):
    """Attack (the Varnish tier): the page said only ``public, max-age``, and a stock Varnish
    serves an expired copy for its grace (10 s by default) while it fetches anew, so a reader
    who came after max-age got the page from before an edit, with an Age past max-age.
    ``stale-while-revalidate=0`` sets that grace to nothing, on the page and on its 304."""
    url = article.get_absolute_url()
    first = client.get(url)
    again = client.get(url, headers={"If-None-Match": first["ETag"]})
    for response in (first, again):
        directives = [d.strip() for d in response["Cache-Control"].split(",")]
        assert "stale-while-revalidate=0" in directives and "public" in directives


def test_a_conditional_get_is_a_304(client, article):
    url = article.get_absolute_url()
    first = client.get(url)
    by_etag = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert by_etag.status_code == 304 and not by_etag.content
    assert by_etag["ETag"] == first["ETag"] and by_etag["Cache-Control"].startswith("public")
    by_date = client.get(url, headers={"If-Modified-Since": first["Last-Modified"]})
    assert by_date.status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_a_head_is_answered_from_the_same_page(client, article):
    url = article.get_absolute_url()
    get = client.get(url)
    head = client.head(url)
    assert head.status_code == 200 and head["ETag"] == get["ETag"] and not head.content


def test_editing_the_article_or_the_report_changes_the_page_at_once(client, article, renders):
    url = article.get_absolute_url()
    before = client.get(url)
    article.title = "A new title for the article"
    article.save()
    after = client.get(url)
    assert "A new title for the article" in after.content.decode()
    assert after["ETag"] != before["ETag"]
    report = article.report
    report.title = "A renamed report"
    report_save(report=report, changed_fields=["title"])
    page = client.get(url).content.decode()
    assert "A renamed report" in page
    assert f"cover-{report.edition}.png" in page
    assert len(renders) == 3


def test_unpublishing_takes_the_page_down_at_once(client, article):
    url = article.get_absolute_url()
    assert client.get(url).status_code == 200
    article.status = Article.Status.DRAFT
    article.save()
    assert client.get(url).status_code == 404


def test_an_edit_in_another_process_is_seen_within_the_recheck(client, article, monkeypatch):
    """Another process's edit is a new generation in PAGE_CACHE: this process reads it at
    most GENERATION_RECHECK seconds later and drops its copies."""
    url = article.get_absolute_url()
    client.get(url)
    Article.objects.filter(pk=article.pk).update(title="Edited elsewhere")  # no signal here
    from django.core.cache import cache

    cache.set(pagecache.GENERATION_KEY, "another-process", timeout=None)
    assert "Edited elsewhere" not in client.get(url).content.decode()  # within the second
    monkeypatch.setattr(pagecache, "GENERATION_RECHECK", 0.0)
    assert "Edited elsewhere" in client.get(url).content.decode()


def test_another_process_serves_the_stored_page_without_rendering(client, article, renders):
    url = article.get_absolute_url()
    first = client.get(url)
    pagecache._local.clear()  # a fresh process: only PAGE_CACHE has the page
    second = client.get(url)
    assert second.content == first.content and len(renders) == 1


def test_a_page_older_than_max_age_is_rendered_again_and_age_counts_up(
    client, article, renders, monkeypatch
):
    url = article.get_absolute_url()
    client.get(url)
    rendered = time.time()
    monkeypatch.setattr(pagecache.time, "time", lambda: rendered + 120)
    assert int(client.get(url)["Age"]) >= 119
    assert len(renders) == 1
    monkeypatch.setattr(pagecache.time, "time", lambda: rendered + 301)
    again = client.get(url)
    assert len(renders) == 2 and again["Age"] == "0"


def test_max_age_is_a_setting_and_zero_renders_every_time(client, article, renders, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PAGE_MAX_AGE": 3600}
    assert client.get(article.get_absolute_url())["Cache-Control"] == PUBLIC.format(3600)
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PAGE_MAX_AGE": 0}
    renders.clear()
    for _ in range(2):
        response = client.get(article.get_absolute_url())
        assert response["Cache-Control"] == PUBLIC.format(0)
    assert len(renders) == 2


def test_a_cookie_a_middleware_sets_on_the_page_makes_that_answer_private(client, article):
    """A malformed CSRF cookie is renewed and a stale session cookie deleted by Django's
    middleware, on the stored page's answer too: that answer is private, never public with a
    Set-Cookie; the next reader's is public again."""
    url = article.get_absolute_url()
    client.get(url)  # stored
    stale = Client()
    stale.cookies["csrftoken"] = "malformed"
    renewed = stale.get(url)
    assert "csrftoken" in renewed.cookies
    assert renewed["Cache-Control"] == "private, no-cache" and "Age" not in renewed
    gone = Client()
    gone.cookies["sessionid"] = "x"  # too short to be a session key: deleted
    deleted = gone.get(url)
    assert deleted.cookies["sessionid"].value == ""
    assert deleted["Cache-Control"] == "private, no-cache"
    conditional = Client()
    conditional.cookies["csrftoken"] = "malformed"
    not_modified = conditional.get(url, headers={"If-None-Match": deleted["ETag"]})
    assert not_modified.status_code == 304 and not_modified["Cache-Control"].startswith("private")
    assert client.get(url)["Cache-Control"].startswith("public")


@override_settings(BACKPAIN_REPORT={**settings.BACKPAIN_REPORT, "SITE_URL": None})
def test_the_host_and_scheme_are_part_of_the_key(client, article):
    """Without SITE_URL the page's links are on the request's origin: a request with another
    (allowed) Host gets a page of its own, never the other host's (no cache poisoning through
    Host); a Host not allowed is a 400 and nothing is stored."""
    url = article.get_absolute_url()
    local = client.get(url, HTTP_HOST="localhost").content.decode()
    plain = client.get(url).content.decode()
    secure = client.get(url, secure=True).content.decode()
    assert "http://localhost/" in local and "http://localhost/" not in plain
    assert "https://testserver/" in secure and "https://testserver/" not in plain
    assert client.get(url, HTTP_HOST="evil.example").status_code == 400
    assert "evil.example" not in client.get(url).content.decode()


def test_a_settings_change_is_seen_at_once(client, article, settings):
    client.get(article.get_absolute_url())
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CONSENT_TEXT": "Yes, new words."}
    assert "Yes, new words." in client.get(article.get_absolute_url()).content.decode()


@override_settings(
    MIDDLEWARE=LOCALE_MIDDLEWARE,
    LANGUAGE_CODE="en",
    LANGUAGES=[("en", "English"), ("de", "German")],
)
def test_each_language_is_a_page_of_its_own_and_vary_names_only_the_language(article):
    url = article.get_absolute_url()
    english = Client(headers={"Accept-Language": "en"}).get(url)
    german = Client(headers={"Accept-Language": "de"}).get(url)
    assert english.content != german.content
    assert 'lang="de"' in german.content.decode() and 'lang="en"' in english.content.decode()
    for response in (english, german):
        assert response["Vary"] == "Accept-Language"
        assert response["Cache-Control"].startswith("public")
    # A language taken from the reader's cookie is not what Accept-Language says: private.
    chosen = Client(headers={"Accept-Language": "en"})
    chosen.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"
    by_cookie = chosen.get(url)
    assert 'lang="de"' in by_cookie.content.decode()
    assert by_cookie["Cache-Control"] == "private, no-cache" and "Age" not in by_cookie


@pytest.mark.parametrize(
    ("base", "reason"),
    [
        ("{% if user.is_authenticated %}Hello {{ user.username }}{% endif %}", "session"),
        ("{% for m in messages %}{{ m }}{% endfor %}", "messages"),
        ("{% csrf_token %}", "CSRF token"),
    ],
)
def test_a_base_template_that_depends_on_the_reader_is_never_public_or_shared(
    article, settings, tmp_path, caplog, renders, base, reason
):
    own = (
        Path(pagecache.__file__).parent.parent / "templates/backpain_report/base.html"
    ).read_text()
    _page_template(tmp_path, "base.html", own.replace("<main", base + "<main", 1), settings)
    ann = User.objects.create_user("ann", password="pw-ann-123")
    bob = User.objects.create_user("bob", password="pw-bob-123")
    url = article.get_absolute_url()
    pages = []
    with caplog.at_level(logging.WARNING, logger="backpain_report.page.pagecache"):
        for user in (ann, bob, None):
            client = Client()
            if user is not None:
                client.force_login(user)
            response = client.get(url)
            # Attack (the Varnish tier): this page said nothing of caching, and a stock
            # Varnish kept the anonymous one for 120 s and served it to other readers.
            assert response["Cache-Control"] == "private, no-cache"
            assert "Age" not in response
            pages.append(response.content.decode())
    assert len(renders) == 3  # rendered per request, as before
    if "username" in base:
        assert "Hello ann" in pages[0] and "Hello bob" in pages[1]
        assert "Hello ann" not in pages[1] + pages[2] and "Hello" not in pages[2]
    warnings = [r.getMessage() for r in caplog.records if "not cacheable" in r.getMessage()]
    assert len(warnings) == 1 and reason in warnings[0]
    # The warning sends the site owner to the docs page that explains it (the README was).
    named = re.search(r"docs/[\w/-]+\.md", warnings[0])
    assert named and "\n## Caching the article page\n" in (ROOT / named.group()).read_text()


def test_a_site_article_page_that_renders_the_form_itself_still_gets_it(
    client, article, settings, tmp_path
):
    _page_template(
        tmp_path,
        "article_detail.html",
        "{% load crispy_forms_tags %}<h1>{{ article.title }}</h1>{% crispy form %}",
        settings,
    )
    response = client.get(article.get_absolute_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="email"' in html and "csrfmiddlewaretoken" not in html


def test_a_site_signup_form_override_still_sees_the_page_context(
    client, article, settings, tmp_path
):
    _page_template(
        tmp_path,
        "signup_form.html",
        '{% load crispy_forms_tags %}<p class="site">Get it for {{ article.title }} '
        "(from {{ request.path }})</p>{% crispy form %}",
        settings,
    )
    html = client.get(article.get_absolute_url()).content.decode()
    assert f"Get it for {article.title} (from {article.get_absolute_url()})" in html


class MarkedRenderer(DjangoTemplates):
    """A site's form renderer: its inputs carry a mark."""

    def render(self, template_name, context, request=None):
        html = super().render(template_name, context, request)
        return mark_safe(html.replace("<input", "<input data-site-widget"))


def test_a_form_renderer_change_is_seen_at_once(client, article, settings):
    assert "data-site-widget" not in client.get(article.get_absolute_url()).content.decode()
    settings.FORM_RENDERER = "tests.test_pagecache.MarkedRenderer"
    assert "data-site-widget" in client.get(article.get_absolute_url()).content.decode()


def test_a_sick_page_cache_still_serves_the_page(client, article, monkeypatch, caplog):
    class Broken:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("cache down")

            return fail

    monkeypatch.setattr(pagecache, "_cache", lambda: Broken())
    monkeypatch.setattr(pagecache, "GENERATION_RECHECK", 0.0)
    with caplog.at_level(logging.WARNING, logger="backpain_report.page.pagecache"):
        for _ in range(2):
            response = client.get(article.get_absolute_url())
            assert response.status_code == 200 and response["Cache-Control"].startswith("public")
    assert any("unavailable" in r.getMessage() for r in caplog.records)


def test_the_page_answers_are_public_and_the_per_reader_pages_are_never_cached(client, article):
    """What a shared cache may keep: the article page; never the sign-up's answers, the done,
    confirm and unsubscribe pages (docs, "Caching the article page")."""
    from django.urls import reverse

    assert client.get(article.get_absolute_url())["Cache-Control"].startswith("public")
    for url in (
        reverse("backpain_report:signup"),
        reverse("backpain_report:signup_done"),
        reverse("backpain_report:confirm", args=["x"]),
        reverse("backpain_report:unsubscribe", args=["x"]),
    ):
        control = client.get(url)["Cache-Control"]
        assert "no-store" in control and "private" in control, url
    post = client.post(reverse("backpain_report:signup"), {"email": "x"})
    assert "no-store" in post["Cache-Control"]


@override_settings(BACKPAIN_REPORT={**settings.BACKPAIN_REPORT, "SITE_URL": None})
def test_each_process_keeps_at_most_local_pages_copies(client, article, monkeypatch):
    monkeypatch.setattr(pagecache, "LOCAL_PAGES", 2)
    url = article.get_absolute_url()
    for host in ("testserver", "localhost", "127.0.0.1"):
        assert client.get(url, HTTP_HOST=host).status_code == 200
    assert len(pagecache._local) == 2


def test_the_admin_is_never_cached(admin_client):
    control = admin_client.get("/admin/backpain_report/subscriber/")["Cache-Control"]
    assert "no-store" in control and "private" in control


def test_a_reader_with_a_malformed_csrf_cookie_does_not_stop_the_page_being_stored(
    article, renders
):
    """The CSRF middleware renews a malformed cookie before the view runs: that says nothing
    about the page, which is stored as for anyone (and that reader's answer is private)."""
    url = article.get_absolute_url()
    stale = Client()
    stale.cookies["csrftoken"] = "malformed"
    first = stale.get(url)
    assert "csrftoken" in first.cookies and first["Cache-Control"] == "private, no-cache"
    second = Client().get(url)
    assert second["Cache-Control"].startswith("public") and len(renders) == 1


def test_a_middleware_that_reads_the_session_first_does_not_make_the_page_per_reader(
    article, renders, settings
):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.test_pagecache.ReadsTheUser"]
    url = article.get_absolute_url()
    Client().get(url)
    assert Client().get(url)["Cache-Control"].startswith("public") and len(renders) == 1


class ReadsTheUser:
    """A site's middleware that looks at the user on every request (logging, say)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.user.is_authenticated  # noqa: B018  (reads the session)
        return self.get_response(request)
