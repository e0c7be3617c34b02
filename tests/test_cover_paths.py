"""Issue 22, defect 4: the cover PNG (the offer's picture, ``og:image``) loads wherever a site
includes the app: under a path with non-ASCII characters or a space, and under a script name
(``SCRIPT_NAME`` from the server, or ``FORCE_SCRIPT_NAME``).

The requests go through Django's real WSGI handler (the test client sets no script prefix, so
it cannot show what ``reverse()`` does under a script name)."""

from __future__ import annotations

import html
import io
import re
import types
from urllib.parse import unquote, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import include, path, set_script_prefix

from backpain_report.page import offer
from backpain_report.report import covers


def urlconf(prefix: str) -> types.ModuleType:
    """A site's URLconf that includes the app under ``prefix``."""
    module = types.ModuleType(f"site_urls_{prefix!r}")
    module.urlpatterns = [path(prefix, include("backpain_report.urls"))]  # type: ignore[attr-defined]
    return module


def wsgi_get(url: str, *, script_name: str = "") -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` (a path as a browser sends it: percent-encoded, starting with the script
    name) as a WSGI server would hand it to Django: ``PATH_INFO`` and ``SCRIPT_NAME`` decoded,
    as bytes in a latin-1 string (PEP 3333)."""
    full = unquote(urlsplit(url).path)
    assert full.startswith(script_name), (url, script_name)
    environ: dict = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name.encode().decode("latin-1"),
        "PATH_INFO": full[len(script_name) :].encode().decode("latin-1"),
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "wsgi.input": io.BytesIO(b""),
    }
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    # As the test client does: the test's transaction keeps its database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = WSGIHandler()(environ, start_response)
        body = b"".join(response)
        response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        set_script_prefix("/")  # the handler set this thread's prefix for the request
    return answer["status"], answer["headers"], body


def wsgi_follow(url: str, *, script_name: str = "", limit: int = 5) -> tuple[int, bytes, list]:
    """GET ``url`` and follow its redirects (at most ``limit``); the final status and body,
    and the URLs visited."""
    visited = [url]
    for _ in range(limit):
        status, headers, body = wsgi_get(url, script_name=script_name)
        if status not in (301, 302, 303, 307, 308):
            return status, body, visited
        url = urlsplit(headers["Location"]).path
        visited.append(url)
    pytest.fail(f"more than {limit} redirects: {visited}")


@pytest.fixture(autouse=True)
def _fresh_covers():
    covers.clear_memory()
    offer._section_titles.cache_clear()
    yield
    covers.clear_memory()


def og_image_path(page: bytes) -> str:
    found = re.search(rb'<meta property="og:image" content="([^"]+)"', page)
    assert found, "no og:image"
    return urlsplit(html.unescape(found.group(1).decode())).path


PREFIXES = ["rückenschmerzen/", "back pain/", "ratgeber/rücken & nacken/"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_cover_loads_under_an_include_with_non_ascii_or_a_space(article, settings, prefix):
    settings.ROOT_URLCONF = urlconf(prefix)
    cover = offer.cover_path(article.report)
    assert "%" in cover  # the browser's (and reverse()'s) form of the path
    status, body, visited = wsgi_follow(cover)
    assert status == 200, visited
    assert visited == [cover] and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_article_pages_picture_and_og_image_load_under_such_an_include(
    article, settings, prefix
):
    settings.ROOT_URLCONF = urlconf(prefix)
    home = offer.cover_path(article.report).split("reports/")[0]
    status, page, _ = wsgi_follow(home)
    assert status == 200
    canonical = re.search(rb'<link rel="canonical" href="([^"]+)"', page)
    assert canonical  # the canonical URL is the article's, percent-encoded, and loads as is
    canonical_path = urlsplit(html.unescape(canonical.group(1).decode())).path
    assert canonical_path == article.get_absolute_url() and canonical_path.startswith(home)
    status, _, visited = wsgi_follow(canonical_path)
    assert status == 200 and len(visited) == 1
    picture = re.search(rb'<img[^>]+src="([^"]*cover-\d+\.png)"', page)
    assert picture
    for url in (html.unescape(picture.group(1).decode()), og_image_path(page)):
        status, body, visited = wsgi_follow(url)
        assert status == 200 and len(visited) == 1 and body.startswith(b"\x89PNG"), visited


@pytest.mark.parametrize("script_name", ["/rückenschmerzen", "/back pain", "/site"])
def test_the_cover_loads_under_a_script_name(article, settings, script_name):
    settings.ROOT_URLCONF = urlconf("back-pain/")
    report = article.report
    status, page, _ = wsgi_follow(f"{script_name}/back-pain/", script_name=script_name)
    assert status == 200
    url = og_image_path(page)
    assert url.endswith(f"/back-pain/reports/{report.slug}/cover-{report.edition}.png")
    assert unquote(url).startswith(f"{script_name}/back-pain/")
    status, body, visited = wsgi_follow(url, script_name=script_name)
    assert status == 200 and len(visited) == 1 and body.startswith(b"\x89PNG"), visited


@pytest.mark.parametrize("script_name", ["/rückenschmerzen", "/back pain", "/site"])
def test_the_cover_loads_under_force_script_name(article, settings, script_name):
    settings.ROOT_URLCONF = urlconf("back-pain/")
    settings.FORCE_SCRIPT_NAME = script_name
    report = article.report
    url = f"{script_name}/back-pain/reports/{report.slug}/cover-{report.edition}.png"
    # FORCE_SCRIPT_NAME wins over the server's SCRIPT_NAME (here none: a proxy strips it).
    status, body, visited = wsgi_follow(url, script_name=script_name)
    assert status == 200 and len(visited) == 1 and body.startswith(b"\x89PNG"), visited


@pytest.mark.parametrize("prefix", ["rückenschmerzen/", "back pain/"])
def test_an_old_or_zero_padded_edition_still_redirects_once_to_the_current_cover(
    article, settings, prefix
):
    settings.ROOT_URLCONF = urlconf(prefix)
    report = article.report
    current = offer.cover_path(report)
    padded = current.replace(f"cover-{report.edition}.png", f"cover-0{report.edition}.png")
    older = current.replace(f"cover-{report.edition}.png", f"cover-{report.edition + 7}.png")
    for url in (padded, older):
        status, headers, _ = wsgi_get(url)
        assert status == 302 and urlsplit(headers["Location"]).path == current
