"""Hostile settings, URLs and content against the landing page, its cover and the report's
links (the review of issue 12)."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils.encoding import punycode
from pypdf import PdfReader

from backpain_report import checks
from backpain_report.models import Article
from backpain_report.page import offer
from backpain_report.report import covers
from tests.test_offer import SIGNUP, _head, cover_url, forget_stored_covers
from tests.test_report_pages import PREPARED_ON, READER, app_settings, uris


@pytest.fixture(autouse=True)
def _fresh_covers():
    covers.clear_memory()
    offer._section_titles.cache_clear()
    yield
    covers.clear_memory()


def privacy_ids(value: object, settings) -> set[str]:
    settings.DEBUG = True  # W003 (a per-process throttle cache) is tested on its own
    settings.BACKPAIN_REPORT = {
        "FROM_EMAIL": "a@b.com",
        "SITE_URL": "https://x.example",
        "PRIVACY_URL": value,
    }
    return {m.id for m in checks.check_settings()}


# --- PRIVACY_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/\\evil.example/p",
        "/\t/evil.example/p",
        "/\n/evil.example",
        "/privacy notice/",
        "https://",
        "http:///evil",
    ],
)
def test_a_privacy_path_browsers_read_as_another_host_is_e008(settings, value):
    # Browsers read "\" as "/" and drop tabs and newlines: these lead off the site.
    assert privacy_ids(value, settings) == {"backpain_report.E008"}


@pytest.mark.parametrize("value", ["javascript:alert(1)", "/\\evil.example/p", "//evil.example"])
def test_an_unusable_privacy_url_is_never_linked_even_with_the_checks_silenced(
    client, article, make_delivery, settings, value
):
    from django.core import mail

    from backpain_report.delivery.sending import delivery_send

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PRIVACY_URL": value}
    page = client.get(article.get_absolute_url()).content.decode()
    assert "privacy notice" not in page and "evil.example" not in page
    assert "javascript:" not in page
    delivery_send(delivery_id=make_delivery().pk)
    [message] = mail.outbox
    assert "Privacy" not in message.body and "evil" not in message.body
    assert "javascript:" not in message.alternatives[0][0]


# --- REPORT_CTA at run time -----------------------------------------------------------------


@pytest.mark.heavy  # a PDF render per value
@pytest.mark.parametrize(
    "value",
    [
        {"text": "Click", "url": "javascript:alert(1)"},
        {"text": "Click", "url": "JaVaScRiPt:alert(1)"},
        ["Click", "https://x.example/"],
        {"text": "", "url": "https://x.example/"},
    ],
)
def test_an_unusable_report_cta_never_reaches_the_pdf(value, caplog):
    from backpain_report.report.pdf import render_report_pdf
    from tests.samples import make_report

    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=value)):
        pdf = render_report_pdf(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    assert "REPORT_CTA" in caplog.text  # logged as an error
    links = [uri for page in PdfReader(io.BytesIO(pdf)).pages for uri in uris(page)]
    assert not [uri for uri in links if not uri.startswith(("https://", "http://"))], links
    assert not [uri for uri in links if "x.example" in uri], links
    assert "https://reports.example.com/back-pain/" in links  # the default next step instead


@pytest.mark.heavy  # a PDF render
def test_a_report_cta_on_a_non_ascii_host_is_an_ascii_uri_in_the_pdf():
    from backpain_report.report.pdf import render_report_pdf
    from tests.samples import make_report

    cta = {"text": "Book", "url": "https://rückenschmerz.example/buchen/"}
    with override_settings(BACKPAIN_REPORT=app_settings(REPORT_CTA=cta)):
        pdf = render_report_pdf(report=make_report(), reader_name=READER, prepared_on=PREPARED_ON)
    links = uris(PdfReader(io.BytesIO(pdf)).pages[-1])
    assert all(uri.isascii() for uri in links), links
    assert f"https://{punycode('rückenschmerz.example')}/buchen/" in links
    assert "rückenschmerz.example/buchen/" in PdfReader(io.BytesIO(pdf)).pages[-1].extract_text()


# --- The cover URL ---------------------------------------------------------------------------


def test_a_cover_that_cannot_render_is_no_500(client, article, monkeypatch):
    import backpain_report.report.pdf as pdf_module

    def broken(**kwargs):
        raise RuntimeError("WeasyPrint fell over")

    monkeypatch.setattr(pdf_module, "render_cover_pdf", broken)
    forget_stored_covers(article.report)
    client.raise_request_exception = False
    response = client.get(cover_url(article.report))
    assert response.status_code == 503
    assert "no-store" in response["Cache-Control"]
    assert not covers._key_locks  # no lock left behind per failed key


def test_a_report_whose_template_is_missing_gets_no_500_for_its_cover(client, article):
    report = article.report
    report.template_name = "nope/missing.html"
    report.save()
    client.raise_request_exception = False
    assert client.get(cover_url(report)).status_code == 503


@pytest.mark.parametrize(
    "tail", ["cover-" + "9" * 5000 + ".png", "cover-99999999999999999999.png", "cover--1.png"]
)
def test_absurd_editions_are_no_500(client, article, tail):
    client.raise_request_exception = False
    response = client.get(f"/back-pain/reports/{article.report.slug}/{tail}")
    assert response.status_code in {302, 404}


def test_a_cover_revalidates_with_weak_and_listed_etags(client, article):
    url = cover_url(article.report)
    etag = client.get(url)["ETag"]
    assert client.get(url, HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"x", {etag}').status_code == 304
    assert client.head(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_a_storage_that_refuses_writes_still_serves_the_cover(client, article, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(covers, "file_write", refuse)
    response = client.get(cover_url(article.report))
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


# --- The no-JS error path -------------------------------------------------------------------


def test_errors_for_an_article_without_a_report_still_show_the_form(client, article):
    plain = Article.objects.create(
        title="Plain", slug="plain", body="Text.", status=Article.Status.PUBLISHED
    )
    response = client.post(SIGNUP, {"name": "Ann", "email": "nope", "article": plain.slug})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="email"' in page and "Enter a valid email address." in page


def test_the_error_page_can_be_sent_again_and_leaks_nothing_to_the_next_reader(article, no_broker):
    from django.test import Client

    reader = Client(enforce_csrf_checks=True, headers={"Sec-Fetch-Site": "same-origin"})
    reader.get(article.get_absolute_url())  # stores the page
    bad = reader.post(SIGNUP, {"name": "Secret Ann", "email": "secret@", "article": article.slug})
    page = bad.content.decode()
    assert bad.status_code == 200 and "Secret Ann" in page
    assert "csrfmiddlewaretoken" not in page and not bad.cookies
    assert "public" not in bad.get("Cache-Control", "")  # an answer to a POST: never stored
    good = reader.post(
        SIGNUP,
        {"name": "Ann", "email": "ann@example.com", "consent": "on", "article": article.slug},
    )
    assert good.status_code == 303
    other = Client().get(article.get_absolute_url()).content.decode()
    assert "Secret Ann" not in other and "secret@" not in other and "is-invalid" not in other


def test_errors_posted_with_a_draft_articles_slug_say_nothing_about_it(client, article):
    draft = Article.objects.create(
        title="Unreleased plans", slug="unreleased", body="Secret.", report=article.report
    )
    response = client.post(SIGNUP, {"email": "nope", "article": draft.slug})
    page = response.content.decode()
    assert response.status_code == 200 and "Unreleased plans" not in page
    assert "Secret." not in page


def test_a_throttled_ip_gets_429_both_ways(client, article, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_IP": (1, 60)}
    data = {"name": "Ann", "email": "nope", "article": article.slug}
    client.post(SIGNUP, data)
    assert client.post(SIGNUP, data).status_code == 429
    json_answer = client.post(SIGNUP, data, HTTP_ACCEPT="application/json")
    assert json_answer.status_code == 429 and json_answer.json() == {"status": "throttled"}


# --- Hostile content in the head ------------------------------------------------------------


HOSTILE = '"><script>alert(1)</script>\u2028<!--'


def test_hostile_titles_and_headings_stay_text(client, article, settings):
    article.title = HOSTILE + "Ünïcødé 背痛"
    article.summary = HOSTILE
    article.byline = HOSTILE
    article.save()
    report = article.report
    report.title = HOSTILE
    report.save()
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "OFFER_HEADING": HOSTILE}
    page = client.get(article.get_absolute_url()).content.decode()
    assert "<script>alert(1)" not in page
    head = _head(page)
    assert head.meta["og:title"] == article.title and head.meta["description"] == HOSTILE
    assert head.meta["og:image:alt"] == f"The cover of {HOSTILE}"
    [block] = head.json_ld
    data = json.loads(block)
    assert data["headline"] == article.title and data["author"]["name"] == HOSTILE
    assert "<" not in block


# --- The sitemap ----------------------------------------------------------------------------


def test_the_sitemap_lists_the_canonical_urls(client, article):
    canonical = _head(client.get(article.get_absolute_url()).content.decode()).links["canonical"]
    xml = client.get("/sitemap.xml", HTTP_HOST="testserver").content.decode()
    assert f"<loc>{canonical}</loc>" in xml


def test_without_site_url_the_sitemap_uses_the_request(client, article, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SITE_URL": None}
    xml = client.get("/sitemap.xml").content.decode()
    assert f"<loc>http://testserver{article.get_absolute_url()}</loc>" in xml


# --- Cost -----------------------------------------------------------------------------------


def test_the_stored_article_page_costs_no_query_and_no_render(
    client, article, django_assert_max_num_queries, monkeypatch
):
    from backpain_report import forms  # the form's HTML is rendered there (issue 23)

    client.get(article.get_absolute_url())
    calls = []
    real = forms.render_to_string
    monkeypatch.setattr(forms, "render_to_string", lambda *a, **k: calls.append(1) or real(*a, **k))
    with django_assert_max_num_queries(0):
        response = client.get(article.get_absolute_url())
    assert response.status_code == 200 and calls == []
    assert reverse("backpain_report:signup") in response.content.decode()


# --- More hostile content -------------------------------------------------------------------


@pytest.mark.heavy  # a PDF render
def test_script_links_in_the_report_body_never_become_pdf_links():
    from backpain_report.report.pdf import render_report_pdf
    from tests.samples import make_report

    report = make_report()
    report.body += (
        "\n\n## Links\n\n[a](javascript:alert(1)) [b](JAVASCRIPT:alert(2)) [c](data:text/html,x)"
        ' <a href="vbscript:x">d</a> [e](java&#x09;script:alert(3))\n'
    )
    with override_settings(BACKPAIN_REPORT=app_settings()):
        pdf = render_report_pdf(report=report, reader_name=READER, prepared_on=PREPARED_ON)
    links = [uri for page in PdfReader(io.BytesIO(pdf)).pages for uri in uris(page)]
    assert links and all(uri.startswith(("https://", "http://", "mailto:")) for uri in links)


@pytest.mark.parametrize("heading", ["", "   "])
def test_a_blank_offer_heading_is_e010_and_the_default_shows(client, article, settings, heading):
    settings.DEBUG = True
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "OFFER_HEADING": heading}
    assert "backpain_report.E010" in {m.id for m in checks.check_settings()}
    page = client.get(article.get_absolute_url()).content.decode()
    default = "Get the free guide to back muscle spasms"
    assert re.findall(r'<h2 id="bpr-offer-title">(.*?)</h2>', page) == [default]
    assert re.findall(r'<h2 id="bpr-cta-title">(.*?)</h2>', page) == [default]
    card = client.get(SIGNUP).content.decode()
    assert re.findall(r'<h1 id="bpr-cta-title">(.*?)</h1>', card) == [default]


def test_a_cover_url_with_a_padded_edition_redirects_to_the_canonical_one(client, article):
    report = article.report
    for padded in (f"cover-0{report.edition}.png", f"cover-000{report.edition}.png"):
        response = client.get(f"/back-pain/reports/{report.slug}/{padded}")
        assert response.status_code == 302 and response["Location"] == cover_url(report)
