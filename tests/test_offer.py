"""Issue 12: the offer above the fold, the cover thumbnail, errors on the article page, privacy,
SEO (meta, JSON-LD, sitemap, noindex) and pages that work under a strict CSP."""

from __future__ import annotations

import datetime
import html as html_lib
import io
import json
import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backpain_report.models import Delivery, Report, Subscriber
from backpain_report.page import offer
from backpain_report.report import covers, pdfcache
from backpain_report.seed import read_article

SIGNUP = reverse("backpain_report:signup")


def cover_url(report: Report) -> str:
    return f"/back-pain/reports/{report.slug}/cover-{report.edition}.png"


def forget_stored_covers(report: Report) -> None:
    """Delete the report's cover PNGs from the private storage (another test may have made
    them)."""
    storage = covers.private_storage()
    if not storage.exists(covers.CACHE_DIR):
        return
    for name in storage.listdir(covers.CACHE_DIR)[1]:
        if name.startswith(f"cover-{report.pk}-"):
            storage.delete(f"{covers.CACHE_DIR}/{name}")


@pytest.fixture(autouse=True)
def _fresh_covers():
    covers.clear_memory()
    offer._section_titles.cache_clear()
    yield
    covers.clear_memory()


# --- The offer block ------------------------------------------------------------------------


def test_the_offer_comes_before_the_article_text_and_the_form_after_it(client, article):
    page = client.get(article.get_absolute_url()).content.decode()
    offer_at = page.index('class="bpr-offer"')
    first_paragraph = "<p>" + read_article().body.split("\n\n")[0][:60]
    assert page.index("<h1>") < offer_at < page.index(first_paragraph)
    free_report_at = page.index('id="free-report"')
    assert page.index(first_paragraph) < free_report_at < page.index('name="email"', free_report_at)
    block = page[offer_at : page.index("</section>", offer_at)]
    assert "Get the free guide to back muscle spasms" in block
    assert article.report.title in block
    assert f'src="{cover_url(article.report)}"' in block
    assert 'id="backpain-report-signup-offer"' in block  # issue 22: the form itself, not a link
    items = re.findall(r"<li>(.*?)</li>", block)
    assert 3 <= len(items) <= 5
    assert items == ["Meet the erector spinae", "Your two goals", "Caring for your back at home",
                     "Gentle exercises to try", "When to see a doctor"]  # fmt: skip


def test_whats_inside_follows_the_reports_own_headings(article):
    report = article.report
    report.body = "## About us\n\nx\n\n## Stretch\n\ny\n\n## Rest &amp; ice\n\nz\n"
    report.save()
    assert offer.report_highlights(report) == ("Stretch", "Rest & ice")


def test_the_seed_call_to_action_stays_in_the_article_and_the_heading_promises_less(
    client, article, settings
):
    page = client.get(article.get_absolute_url()).content.decode()
    body = page[page.index('class="bpr-article-body"') : page.index("</article>")]
    assert "Claim your Free report to eliminate your Back Pain." in body  # where the seed has it
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", page)
    assert headings and not any("eliminate" in heading.lower() for heading in headings)
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "OFFER_HEADING": "Your free guide"}
    page = client.get(article.get_absolute_url()).content.decode()
    assert re.findall(r'<h2 id="bpr-offer-title">(.*?)</h2>', page) == ["Your free guide"]
    assert re.findall(r'<h2 id="bpr-cta-title">(.*?)</h2>', page) == ["Your free guide"]


def test_the_article_page_costs_no_query_once_it_is_stored(client, article):
    client.get(article.get_absolute_url())
    with CaptureQueriesContext(connection) as queries:
        response = client.get(article.get_absolute_url())
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_a_new_edition_lists_its_own_sections(client, article):
    client.get(article.get_absolute_url())
    report = article.report
    report.body += "\n\n## Brand new chapter\n\nText.\n"
    report.edition += 1
    report.save()
    report.body = "## Brand new chapter\n\nText.\n"
    report.save()
    page = client.get(article.get_absolute_url()).content.decode()
    assert "<li>Brand new chapter</li>" in page
    assert f'src="{cover_url(report)}"' in page


# --- The cover thumbnail --------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_cover_is_a_png_of_page_one_of_the_readers_pdf(client, article):
    report = article.report
    response = client.get(cover_url(report))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    width, height = _png_size(response.content)
    assert width == covers.WIDTH and 1.3 < height / width < 1.5  # an A4 page
    # The very page a reader named "" gets on the day the report last changed, pixel for pixel.
    pdf = pdfcache.report_pdf(report=report, reader_name="", prepared_on=covers.cover_date(report))
    assert response.content == covers.pdf_page_png(pdf)
    # ... and not the contents page (page 2).
    assert response.content != covers.pdf_page_png(pdf, page=1)


def test_the_cover_is_cached_with_validators_and_rendered_once(client, article, monkeypatch):
    import backpain_report.report.pdf as pdf_module

    forget_stored_covers(article.report)
    renders = []
    real = pdf_module.render_cover_pdf
    monkeypatch.setattr(
        pdf_module, "render_cover_pdf", lambda **kw: renders.append(1) or real(**kw)
    )
    url = cover_url(article.report)
    first = client.get(url)
    assert first["Cache-Control"] == "public, max-age=86400"
    etag = first["ETag"]
    assert etag.startswith('"') and first["Last-Modified"]
    again = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag
    head = client.head(url)
    assert head.status_code == 200 and head["ETag"] == etag and not head.content
    covers.clear_memory()  # another process: it finds the PNG in the private storage
    assert client.get(url).content == first.content
    assert len(renders) == 1


def test_concurrent_requests_for_a_new_cover_render_it_once(article, monkeypatch):
    import backpain_report.report.pdf as pdf_module

    report = Report.objects.defer("body").get(pk=article.report.pk)
    forget_stored_covers(report)
    renders = []
    real = pdf_module.render_cover_pdf
    monkeypatch.setattr(
        pdf_module, "render_cover_pdf", lambda **kw: renders.append(1) or real(**kw)
    )
    results: list[bytes] = []
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait()
        try:
            results.append(covers.report_cover(report).data)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(renders) == 1


def test_an_old_editions_cover_url_leads_to_the_current_one(client, article):
    report = article.report
    old = cover_url(report)
    report.edition += 1
    report.save()
    response = client.get(old)
    assert response.status_code == 302 and response["Location"] == cover_url(report)


def test_no_cover_for_an_unknown_or_unoffered_report(client, article):
    assert client.get("/back-pain/reports/nope/cover-1.png").status_code == 404
    article.status = "draft"
    article.save()
    assert client.get(cover_url(article.report)).status_code == 404


# --- Errors without JavaScript: the article page again --------------------------------------


def test_errors_without_javascript_show_the_article_page_with_the_form(client, article):
    response = client.post(
        SIGNUP, {"name": "Ann", "email": "nope", "consent": "", "article": article.slug}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "<title>Error: " in page and '<meta name="robots" content="noindex">' in page
    assert "<h1>Back Pain Muscle Spasms. Finding the Culprits</h1>" in page
    assert 'class="bpr-offer"' in page  # the whole article page, not a bare card
    assert read_article().body.split("\n\n")[-1][:60] in page
    # The summary links to each wrong field; the first wrong one gets the focus.
    start = page.index("data-bpr-message>")
    summary = page[start : page.index("</ul>", start)]
    assert '<a href="#id_email">Enter a valid email address.</a>' in summary
    assert '<a href="#id_consent">Please tick the box' in summary
    [focused] = re.findall(r"<input[^>]*autofocus[^>]*>", page)
    assert 'name="email"' in focused and 'value="Ann"' in page
    assert not Subscriber.objects.exists()


def test_json_callers_still_get_status_codes(client, article, no_broker):
    bad = client.post(SIGNUP, {"email": "nope"}, HTTP_ACCEPT="application/json")
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"name", "email", "consent"}
    good = client.post(
        SIGNUP,
        {"name": "Ann", "email": "ann@example.com", "consent": "on"},
        HTTP_ACCEPT="application/json",
    )
    assert good.status_code == 202 and good.json() == {"status": "accepted"}


def test_a_readers_form_error_is_logged_at_info_not_as_a_bad_request_warning(
    client, article, no_broker, caplog
):
    """Issue 23: django.request logged every wrong address an API caller sent as a WARNING,
    "Bad Request: /signup/", on the example's console and in a site's error reports."""
    caplog.set_level("DEBUG")
    bad = client.post(SIGNUP, {"email": "nope"}, HTTP_ACCEPT="application/json")
    page = client.post(SIGNUP, {"email": "nope", "article": article.slug})
    assert bad.status_code == 400 and page.status_code == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    assert [r for r in caplog.records if r.name == "django.request"] == []
    [record] = [r for r in caplog.records if r.name.startswith("backpain_report")]
    assert record.levelname == "INFO"
    assert record.getMessage() == "Sign-up refused: the form has errors (consent, email, name)."


def test_the_form_carries_its_success_message_for_the_script(client, article, settings):
    page = client.get(article.get_absolute_url()).content.decode()
    success = page[page.index("<template data-bpr-success>") :]
    # Issue 22: no "on its way" (a repeat sign-up within the window is sent nothing).
    assert "Check your inbox" in success and "We are emailing your free report to" in success
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    page = client.get(article.get_absolute_url()).content.decode()
    success = page[page.index("<template data-bpr-success>") :]
    assert "confirm your address" in success


# --- Privacy --------------------------------------------------------------------------------


def test_the_privacy_notice_is_linked_next_to_the_consent_checkbox(client, article, settings):
    page = client.get(article.get_absolute_url()).content.decode()
    consent = page[page.index('id="div_id_consent"') :]
    consent = consent[: consent.index("</div> </div>")]
    assert '<a href="/privacy/">our privacy notice</a>' in consent
    assert 'aria-describedby="id_consent_helptext"' in consent
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PRIVACY_URL": None}
    assert "privacy notice" not in client.get(article.get_absolute_url()).content.decode()


def test_the_emails_footer_links_the_privacy_notice(make_delivery, settings):
    from backpain_report.delivery.sending import delivery_send

    delivery_send(delivery_id=make_delivery().pk)
    [message] = mail.outbox
    assert "Privacy notice: https://reports.example.com/privacy/" in message.body
    assert 'href="https://reports.example.com/privacy/"' in message.alternatives[0][0]
    mail.outbox.clear()
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PRIVACY_URL": None}
    delivery_send(delivery_id=make_delivery().pk)
    assert "Privacy" not in mail.outbox[0].body


def test_the_confirmation_email_links_it_too(make_delivery, settings):
    from backpain_report.delivery.emails import build_confirmation_email

    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "PRIVACY_URL": "https://www.example.com/privacy",
    }
    delivery = make_delivery(kind=Delivery.Kind.CONFIRMATION)
    message = build_confirmation_email(delivery=delivery, message_id="<x@example.com>")
    assert "Privacy notice: https://www.example.com/privacy" in message.body


# --- SEO ------------------------------------------------------------------------------------


class _Head(HTMLParser):
    """The page's <meta>, <link rel=canonical> and JSON-LD blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.json_ld: list[str] = []
        self._in_ld = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and ("property" in attrs or "name" in attrs):
            self.meta[attrs.get("property") or attrs["name"]] = attrs.get("content", "")
        elif tag == "link":
            self.links[attrs.get("rel", "")] = attrs.get("href", "")
        elif tag == "script" and attrs.get("type") == "application/ld+json":
            self._in_ld = True
            self.json_ld.append("")

    def handle_endtag(self, tag):
        self._in_ld = self._in_ld and tag != "script"

    def handle_data(self, data):
        if self._in_ld:
            self.json_ld[-1] += data


def _head(page: str) -> _Head:
    parser = _Head()
    parser.feed(page)
    return parser


def _iso(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


def test_the_article_page_tells_search_engines_and_previews_what_it_is(client, article):
    page = client.get(article.get_absolute_url() + "?utm_source=x").content.decode()
    head = _head(page)
    canonical = "https://reports.example.com" + article.get_absolute_url()
    image = "https://reports.example.com" + cover_url(article.report)
    assert f"<title>{html_lib.escape(article.title)}</title>" in page
    assert head.links["canonical"] == canonical  # no query string
    assert head.meta["description"] == article.summary
    assert head.meta["og:url"] == canonical and head.meta["og:type"] == "article"
    assert head.meta["og:title"] == article.title
    assert head.meta["og:image"] == image and head.meta["twitter:image"] == image
    assert head.meta["twitter:card"] in {"summary", "summary_large_image"}
    assert "robots" not in head.meta
    [block] = head.json_ld
    data = json.loads(block)
    assert data["@context"] == "https://schema.org"
    assert data["@type"] == "Article"
    assert data["mainEntityOfPage"] == {"@type": "MedicalWebPage", "@id": canonical}
    assert data["headline"] == article.title and len(data["headline"]) <= 110
    assert data["datePublished"] == "2017-05-30"
    assert _iso(data["dateModified"]) == article.updated_at
    assert data["author"]["@type"] in {"Person", "Organization"} and data["author"]["name"]
    assert data["image"] == [image]
    assert set(data) >= {"headline", "datePublished", "dateModified", "author", "image"}


def test_json_ld_cannot_be_broken_out_of(client, article):
    article.title = "</script><script>alert(1)</script> & more"
    article.save()
    page = client.get(article.get_absolute_url()).content.decode()
    [block] = _head(page).json_ld
    assert json.loads(block)["headline"] == article.title
    assert "</script><script>" not in block


def test_without_site_url_the_request_origin_is_used(client, article, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SITE_URL": None}
    head = _head(client.get(article.get_absolute_url()).content.decode())
    assert head.meta["og:image"] == "http://testserver" + cover_url(article.report)


@pytest.mark.parametrize(
    "path",
    [
        "/back-pain/signup/done/",
        "/back-pain/signup/",
        "/back-pain/confirm/bad-token/",
        "/back-pain/unsubscribe/bad-token/",
        "/back-pain/download/bad-token/",
    ],
)
def test_pages_that_are_no_landing_pages_are_noindex(client, article, path):
    response = client.get(path)
    assert '<meta name="robots" content="noindex">' in response.content.decode()


def test_the_sitemap_lists_published_articles(client, article):
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    xml = response.content.decode()
    # On SITE_URL, as the page's canonical URL (tests/settings.py), not the request's host.
    assert f"<loc>https://reports.example.com{article.get_absolute_url()}</loc>" in xml
    assert f"<lastmod>{article.updated_at.date().isoformat()}</lastmod>" in xml
    article.status = "draft"
    article.save()
    assert article.get_absolute_url() not in client.get("/sitemap.xml").content.decode()


# --- No inline script or style: the pages work under a strict CSP ---------------------------


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "style" in attrs or any(name.startswith("on") for name in attrs):
            self.problems.append(f"<{tag}> with inline style or handler")
        if tag == "style":
            self.problems.append("<style>")
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/ld+json":
            self.problems.append("inline <script>")


def _inline_problems(page: str) -> list[str]:
    parser = _Inline()
    parser.feed(page)
    return parser.problems


def test_no_page_has_inline_script_or_style(client, article, make_subscriber):
    from backpain_report.delivery.tokens import make_confirm_token, make_unsubscribe_token

    subscriber = make_subscriber()
    pages = [
        client.get(article.get_absolute_url()),
        client.get("/back-pain/"),
        client.get("/back-pain/articles/"),
        client.post(SIGNUP, {"email": "nope", "article": article.slug}),
        client.get(SIGNUP),
        client.get("/back-pain/signup/done/"),
        client.get(f"/back-pain/confirm/{make_confirm_token(subscriber)}/"),
        client.get(f"/back-pain/unsubscribe/{make_unsubscribe_token(subscriber.pk)}/"),
        client.post(f"/back-pain/unsubscribe/{make_unsubscribe_token(subscriber.pk)}/"),
        client.get("/back-pain/download/bad-token/"),
    ]
    for response in pages:
        assert response.status_code in {200, 400}, response
        assert _inline_problems(response.content.decode()) == [], response.request["PATH_INFO"]
    assert _inline_problems('<p style="x">') and _inline_problems("<script>x</script>")


def test_the_script_and_favicon_ship_as_static_files():
    from django.contrib.staticfiles import finders

    script = finders.find("backpain_report/js/signup.js")
    assert script and "Accept" in Path(script).read_text(encoding="utf-8")
    assert finders.find("backpain_report/favicon.svg")


def test_the_cover_png_decodes(client, article):
    from PIL import Image

    image = Image.open(io.BytesIO(client.get(cover_url(article.report)).content))
    assert image.format == "PNG" and image.size[0] == covers.WIDTH


# --- Issue 22: the form inside the offer -----------------------------------------------------


class _Ids(HTMLParser):
    """Every element id, every ``label for`` and ``aria-describedby`` / ``href="#…"`` target,
    and each form's fields (by ``name``) and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.refs: list[str] = []
        self.forms: dict[str, list[str]] = {}
        self._form: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.append(attrs["id"])
        if tag == "label" and attrs.get("for"):
            self.refs.append(attrs["for"])
        self.refs += (attrs.get("aria-describedby") or "").split()
        if tag == "form":
            self._form = attrs.get("id", "")
            self.forms[self._form] = []
        elif self._form is not None and tag in {"input", "button"} and attrs.get("name"):
            submit = "!" if attrs.get("type") == "submit" else ""
            self.forms[self._form].append(attrs["name"] + submit)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def _ids(page: str) -> _Ids:
    parser = _Ids()
    parser.feed(page)
    return parser


def _offer_block(page: str) -> str:
    start = page.index('class="bpr-offer"')
    return page[start : page.index('class="bpr-article-body"', start)]


def test_the_offer_holds_the_form_and_the_end_of_the_article_another(client, article):
    page = client.get(article.get_absolute_url()).content.decode()
    parsed = _ids(page)
    offer_form, end_form = "backpain-report-signup-offer", "backpain-report-signup"
    assert list(parsed.forms) == [offer_form, end_form]
    for fields in parsed.forms.values():
        assert {"name", "email", "consent", "website", "article", "submit!"} <= set(fields)
    block = _offer_block(page)
    assert 'id="backpain-report-signup-offer"' in block and 'name="place" value="offer"' in block
    assert 'action="/back-pain/signup/"' in block
    # Two forms on one page: no id twice, and every label and description finds its element.
    assert len(parsed.ids) == len(set(parsed.ids)), sorted(parsed.ids)
    assert set(parsed.refs) <= set(parsed.ids), set(parsed.refs) - set(parsed.ids)
    assert {"id_offer_name", "id_offer_email", "id_offer_consent", "id_name", "id_email"} <= set(
        parsed.ids
    )


def test_the_page_with_two_forms_is_the_same_for_every_reader(client, article):
    first = client.get(article.get_absolute_url(), HTTP_X_REAL_IP="192.0.2.1")
    client.cookies.clear()
    second = client.get(article.get_absolute_url() + "?utm_source=x", HTTP_COOKIE="a=b")
    assert first.content == second.content and first["ETag"] == second["ETag"]
    assert first["Cache-Control"].startswith("public")
    assert "csrfmiddlewaretoken" not in first.content.decode()


def test_the_offers_form_signs_up_without_javascript(client, article, no_broker):
    response = client.post(
        SIGNUP,
        {"name": "Ann", "email": "ann@example.com", "consent": "on", "article": article.slug,
         "place": "offer"},
    )  # fmt: skip
    assert response.status_code == 303
    assert Subscriber.objects.get().email == "ann@example.com"  # processed at once (no_broker)


def test_errors_in_the_offers_form_show_in_the_offer_without_javascript(client, article):
    response = client.post(
        SIGNUP, {"name": "Ann", "email": "nope", "consent": "", "article": article.slug,
                 "place": "offer"},
    )  # fmt: skip
    assert response.status_code == 200
    page = response.content.decode()
    block = _offer_block(page)
    assert '<a href="#id_offer_email">Enter a valid email address.</a>' in block
    [focused] = re.findall(r"<input[^>]*autofocus[^>]*>", page)
    assert 'id="id_offer_email"' in focused
    # The form after the article is the unbound one, with no error of its own.
    end = page[page.index('id="free-report"') :]
    assert "is-invalid" not in end and "Enter a valid email address." not in end
    parsed = _ids(page)
    assert len(parsed.ids) == len(set(parsed.ids))
    assert not Subscriber.objects.exists()


def test_an_unknown_place_is_the_form_after_the_article(client, article):
    response = client.post(
        SIGNUP, {"name": "Ann", "email": "nope", "consent": "on", "article": article.slug,
                 "place": "<script>"},
    )  # fmt: skip
    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter a valid email address." not in _offer_block(page)
    assert '<a href="#id_email">Enter a valid email address.</a>' in page
    assert "<script>" not in page.split("</head>", 1)[1].replace('<script src="', "")


def test_the_offers_honeypot_answers_as_any_sign_up_and_stores_nothing(client, article):
    from backpain_report.models import PendingSignup

    response = client.post(
        SIGNUP,
        {"name": "Bot", "email": "bot@example.com", "consent": "on", "article": article.slug,
         "place": "offer", "website": "http://spam.example"},
    )  # fmt: skip
    assert response.status_code == 303
    assert not PendingSignup.objects.exists() and not Subscriber.objects.exists()
