"""Attacks found by the review of issue 21: the article page in any cache (docs, "The
article page in any cache").

- A reader whose request carries a malformed CSRF cookie, arriving when the page is not stored
  (after an edit, after PAGE_MAX_AGE), makes the page "per reader" for every later reader of
  that process until the next edit: rendered per request, never public, a false warning.
- Every spelling of an allowed host (a port of any digits, upper case, a trailing dot: Django's
  ALLOWED_HOSTS ignores them) stores a page of its own in PAGE_CACHE: hostile requests fill the
  shared cache (with the throttles' and the page views' counters in it) without bound.
- The admin's "Unpublish the selected articles" action (a QuerySet.update, no post_save) does not
  drop the stored page: the unpublished article is still served, public, for PAGE_MAX_AGE.
- A conditional GET with If-Modified-Since alone gets a 304 for a page that changed with the
  settings (Last-Modified only follows the article's and the report's edits).
- A setting the page depends on but the digest leaves out (LOCALE_PATHS) is not seen.
- A site's LocaleMiddleware subclass takes the language from the cookie, yet the page is public
  (the check looks for Django's dotted path only): a CDN keeps it for Accept-Language readers.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.middleware.locale import LocaleMiddleware
from django.test import Client, override_settings

from backpain_report.models import Article
from backpain_report.page import pagecache

pytestmark = pytest.mark.django_db


def _stored_pages() -> int:
    """Pages in PAGE_CACHE (the tests' default cache: local memory)."""
    return sum(
        1 for key in cache._cache if ":backpain_report:page:" in key and "generation" not in key
    )


def test_a_malformed_csrf_cookie_does_not_make_the_page_per_reader_for_everyone(article):
    url = article.get_absolute_url()
    odd = Client()
    odd.cookies["csrftoken"] = "malformed"  # the first request after an edit or after max-age
    first = odd.get(url)
    assert first.status_code == 200
    assert "public" not in first.get("Cache-Control", "")  # its own answer sets a cookie: fine
    for _ in range(2):
        everyone = Client().get(url)
        assert everyone.status_code == 200
        assert everyone.get("Cache-Control", "").startswith("public")
        assert "ETag" in everyone and "Age" in everyone


def test_spellings_of_one_allowed_host_do_not_each_store_a_page(article):
    url = article.get_absolute_url()
    hosts = ["testserver", "TESTSERVER", "TestServer", "testserver.", "testserver:80"]
    hosts += [f"testserver:{n}" for n in range(1, 21)] + ["testserver:000000000001"]
    for host in hosts:
        assert Client().get(url, HTTP_HOST=host).status_code == 200
    assert _stored_pages() <= 2


def test_the_admins_unpublish_action_takes_the_page_down_at_once(admin_client, article):
    url = article.get_absolute_url()
    assert Client().get(url).status_code == 200  # stored
    changelist = "/admin/backpain_report/article/"
    response = admin_client.post(
        changelist, {"action": "unpublish", "_selected_action": [article.pk]}
    )
    assert response.status_code == 302
    assert Article.objects.get(pk=article.pk).status == Article.Status.DRAFT
    assert Client().get(url).status_code == 404


def test_the_admins_publish_action_changes_the_home_page_at_once(admin_client, article):
    """The root shows DEFAULT_ARTICLE, else the newest: publishing the default one in bulk."""
    Article.objects.create(
        title="Another article", slug="another", body="Text.", status=Article.Status.PUBLISHED
    )
    Article.objects.filter(pk=article.pk).update(status=Article.Status.DRAFT)
    pagecache.pages_invalidate()
    home = "/back-pain/"
    assert "Another article" in Client().get(home).content.decode()  # stored
    admin_client.post(
        "/admin/backpain_report/article/", {"action": "publish", "_selected_action": [article.pk]}
    )
    assert article.title in Client().get(home).content.decode()


def test_if_modified_since_alone_gets_the_page_changed_by_the_settings(
    client, article, settings, monkeypatch
):
    url = article.get_absolute_url()
    first = client.get(url)
    later = time.time() + 60  # a deploy with new settings, a minute later
    monkeypatch.setattr(pagecache.time, "time", lambda: later)
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CONSENT_TEXT": "Yes, new words."}
    again = client.get(url, headers={"If-Modified-Since": first["Last-Modified"]})
    assert again.status_code == 200 and "Yes, new words." in again.content.decode()


def _mo(messages: dict[str, str]) -> bytes:
    """A GNU .mo catalogue of ``messages`` (what msgfmt writes), with a UTF-8 header."""
    import struct

    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = [k.encode() for k, _ in entries]
    strs = [v.encode() for _, v in entries]
    n = len(entries)
    start = 7 * 4 + 16 * n
    offsets, data = [], b""
    for text in ids + strs:
        offsets.append((len(text), start + len(data)))
        data += text + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, start)
    table = b"".join(struct.pack("<2I", *o) for o in offsets)
    return header + table + data


def test_a_site_catalogue_in_locale_paths_is_seen_at_once(client, article, settings, tmp_path):
    """Docs, "Languages": a site-wide catalogue comes with LOCALE_PATHS; docs, "Edits": a
    change of the settings drops the stored pages (the digest is part of the key)."""
    settings.LANGUAGE_CODE = "de"
    client.get(article.get_absolute_url())  # stored
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "django.mo").write_bytes(_mo({"Send me the free report": "Jetzt gratis holen"}))
    settings.LOCALE_PATHS = [str(tmp_path)]
    assert "Jetzt gratis holen" in client.get(article.get_absolute_url()).content.decode()


class SiteLocaleMiddleware(LocaleMiddleware):
    """A site's own locale middleware (a subclass, as sites write to add a rule of theirs)."""


@override_settings(
    MIDDLEWARE=[
        *django_settings.MIDDLEWARE[:2],
        "tests.test_attack_pagecache.SiteLocaleMiddleware",
        *django_settings.MIDDLEWARE[2:],
    ],
    LANGUAGE_CODE="en",
    LANGUAGES=[("en", "English"), ("de", "German")],
)
def test_a_language_from_the_cookie_is_never_public_with_a_locale_middleware_subclass(article):
    """Docs, "Language": a request whose language may come from the language cookie is
    answered private; a page in German sent public with only Vary: Accept-Language would be
    kept by a CDN for every English reader."""
    reader = Client(headers={"Accept-Language": "en"})
    reader.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "de"
    response = reader.get(article.get_absolute_url())
    assert 'lang="de"' in response.content.decode()
    assert "public" not in response["Cache-Control"]
