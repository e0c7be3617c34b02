"""The Wagtail test site: a page with the sign-up block delivers the chosen article's report.

Run by tests/test_wagtail.py with ``--ds tests.wagtail_site.settings`` (its own settings).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse
from wagtail.blocks import StreamValue, StructBlockValidationError
from wagtail.coreutils import get_supported_content_language_variant
from wagtail.models import Locale, Page, Site

from backpain_report.contrib.wagtail.blocks import ReportSignupBlock
from backpain_report.models import Article, Delivery, Report, Subscriber
from tests.samples import hidden, wait_for
from tests.wagtail_site.models import ContentPage

pytestmark = pytest.mark.django_db(transaction=True)


def site_home() -> Page:
    """The site's home page (Wagtail's initial data; made again after a transactional flush)."""
    Locale.objects.get_or_create(
        language_code=get_supported_content_language_variant(settings.LANGUAGE_CODE)
    )
    home = Page.objects.filter(depth=2).first()
    if home is None:
        root = Page.get_first_root_node() or Page.add_root(title="Root", slug="root")
        home = root.add_child(instance=Page(title="Home", slug="home"))
    Site.objects.update_or_create(
        is_default_site=True,
        defaults={"hostname": "testserver", "port": 80, "root_page": home},
    )
    return home


def make_page(article: Article, *, title: str = "Our clinic") -> ContentPage:
    home = site_home()
    page = ContentPage(title=title, slug="clinic")
    page.body = [
        ("paragraph", "<p>Welcome to the clinic.</p>"),
        ("report_signup", {"article": article, "heading": "Get our free guide"}),
    ]
    home.add_child(instance=page)
    page.save_revision().publish()
    return page


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_a_page_with_the_block_delivers_the_chosen_report(
    article, celery_worker, tmp_path, settings
):
    # The PDF read from the email itself (DELIVERY "link", the default, sends a link instead).
    settings.BACKPAIN_REPORT = {**getattr(settings, "BACKPAIN_REPORT", {}), "DELIVERY": "attach"}
    page = make_page(article)
    client = Client(enforce_csrf_checks=True)
    response = client.get(page.url + "?utm_source=clinic&utm_campaign=winter")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Welcome to the clinic." in html and "Get our free guide" in html
    assert 'id="backpain-report-signup"' in html
    assert hidden(html, "article") == article.slug
    assert hidden(html, "utm_source") == ""  # the same for every reader: the browser fills it
    assert "csrfmiddlewaretoken" not in html

    # Without the app's script (this page has none), the utm_* come from the POST's Referer.
    fields = {n: hidden(html, n) for n in ("article", "utm_source", "utm_campaign")}
    answer = client.post(
        reverse("backpain_report:signup"),
        {**fields, "name": "Wanda", "email": "wanda@example.com", "consent": "on"},
        headers={
            "Sec-Fetch-Site": "same-origin",
            "Referer": "http://testserver" + page.url + "?utm_source=clinic&utm_campaign=winter",
        },
    )
    assert answer.status_code == 303
    assert wait_for(lambda: Delivery.objects.filter(status="sent").exists())
    subscriber = Subscriber.objects.get()
    assert subscriber.source_article == article
    assert (subscriber.utm_source, subscriber.utm_campaign) == ("clinic", "winter")
    (message,) = mail.outbox
    assert message.to == ["wanda@example.com"]
    (attachment,) = [a for a in message.attachments if a[2] == "application/pdf"]
    text = pdf_text(attachment[1], tmp_path)
    assert "Wanda" in text and article.report.title.split()[0] in text


def test_the_block_refuses_an_article_without_a_report(article):
    draft = Article.objects.create(title="Draft", slug="draft", body="x", report=article.report)
    no_report = Article.objects.create(
        title="Plain", slug="plain", body="x", status=Article.Status.PUBLISHED
    )
    block = ReportSignupBlock()
    assert block.clean({"article": article, "heading": ""})["article"] == article
    for wrong in (draft, no_report):
        with pytest.raises(StructBlockValidationError):
            block.clean({"article": wrong, "heading": ""})


def test_an_article_unpublished_later_shows_no_form(article):
    page = make_page(article)
    Article.objects.filter(pk=article.pk).update(status=Article.Status.DRAFT)
    html = Client().get(page.url).content.decode()
    assert "Welcome to the clinic." in html and "backpain-report-signup" not in html


def test_editors_pick_the_article_from_the_snippet_chooser(article, admin_client):
    chooser = admin_client.get("/cms/snippets/choose/backpain_report/article/")
    assert chooser.status_code == 200
    assert article.title in chooser.json()["html"]
    listing = admin_client.get("/cms/snippets/backpain_report/report/")
    assert listing.status_code == 200 and article.report.title in listing.content.decode()
    # The page's stored block names the article by its id, as Wagtail's chooser posts it.
    page = make_page(article)
    stored = ContentPage.objects.get(pk=page.pk).body
    assert isinstance(stored, StreamValue)
    assert stored[1].value["article"] == article


def test_a_report_edited_in_wagtail_gets_a_new_edition(article, admin_client):
    report = article.report
    edition = report.edition
    url = f"/cms/snippets/backpain_report/report/edit/{report.pk}/"
    form = {
        "title": report.title,
        "subtitle": report.subtitle,
        "slug": report.slug,
        "author": report.author,
        "body": report.body + "\n\nOne more paragraph.",
        "template_name": report.template_name,
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, re.findall(r"error[^<]{0,200}", response.content.decode())
    assert Report.objects.get(pk=report.pk).edition == edition + 1
