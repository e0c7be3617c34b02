"""Many articles, many reports: a second report made by an editor in the admin from Markdown,
sign-ups on each article (and through the template tag on any page) deliver the right PDF,
and the funnel splits them per article."""

from __future__ import annotations

import subprocess

import pytest
from django.core import mail
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from backpain_report import stats
from backpain_report.models import Article, Delivery, Report
from tests.samples import hidden, wait_for

# Seconds a test: an editor's journey through a Celery worker and PDFs; `make test-fast` skips it.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.heavy]

SECOND_REPORT_MD = """\
## Why your desk hurts

Sitting for long spells loads the discs. The **Quokka routine** breaks it up.

## The Quokka routine

- Stand every thirty minutes
- Roll the shoulders ten times
- Walk to the window and back
"""


def editor_adds_report_and_article(admin_client) -> Article:
    """What an editor does in the admin: a report from Markdown, an article offering it,
    then "Publish the selected articles"."""
    response = admin_client.post(
        reverse("admin:backpain_report_report_add"),
        {
            "title": "Desk Work Without Back Pain",
            "subtitle": "A short guide",
            "slug": "desk-work",
            "author": "The editors",
            "template_name": "backpain_report/report/report.html",
            "body": SECOND_REPORT_MD,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    report = Report.objects.get(slug="desk-work")
    response = admin_client.post(
        reverse("admin:backpain_report_article_add"),
        {
            "title": "Back pain at the desk",
            "slug": "back-pain-at-the-desk",
            "byline": "The editors",
            "summary": "Why desks hurt backs.",
            "body": "Desks hurt backs.\n\nHere is why.",
            "status": "draft",
            "report": report.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    article = Article.objects.get(slug="back-pain-at-the-desk")
    admin_client.post(
        reverse("admin:backpain_report_article_changelist"),
        {"action": "publish", "_selected_action": [article.pk]},
    )
    article.refresh_from_db()
    assert article.status == Article.Status.PUBLISHED and article.report == report
    return article


def pdf_text(pdf: bytes, tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def sign_up(client, form_html: str, *, name: str, email: str) -> None:
    data = {"name": name, "email": email, "consent": "on", "article": hidden(form_html, "article")}
    response = client.post(reverse("backpain_report:signup"), data)
    assert response.status_code == 303


def test_two_articles_two_reports_each_sign_up_gets_its_own_pdf(
    client, admin_client, article, celery_worker, tmp_path, settings
):
    # The PDF read from the email itself (DELIVERY "link", the default, sends a link instead).
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}
    desk = editor_adds_report_and_article(admin_client)
    tag = Template("{% load backpain_report %}{% report_signup_form slug %}")

    def tag_form(slug: str) -> str:
        request = RequestFactory().get("/any/page/of/the/site/")
        return tag.render(Context({"request": request, "slug": slug}))

    forms = {
        "ann@example.com": client.get(article.get_absolute_url()).content.decode(),
        "ben@example.com": client.get(desk.get_absolute_url()).content.decode(),
        "cid@example.com": tag_form(desk.slug),
        "dee@example.com": tag_form(article.slug),
    }
    expected = {
        "ann@example.com": article,
        "ben@example.com": desk,
        "cid@example.com": desk,
        "dee@example.com": article,
    }
    for email, html in forms.items():
        assert hidden(html, "article") == expected[email].slug
        sign_up(client, html, name=email.split("@")[0].title(), email=email)
    assert wait_for(lambda: Delivery.objects.filter(status="sent").count() == 4)

    for message in mail.outbox:
        (email,) = message.to
        chosen = expected[email]
        assert Delivery.objects.get(subscriber__email=email).report == chosen.report
        (pdf,) = [content for _n, content, kind in message.attachments if kind == "application/pdf"]
        text = pdf_text(pdf, tmp_path, email)
        if chosen == desk:
            assert "Desk Work Without Back Pain" in text and "Quokka routine" in text
        else:
            assert "Quokka" not in text and "Desk Work" not in text
            assert article.report.title.split(":")[0] in text

    today = timezone.localdate()
    for chosen in (article, desk):
        split = stats.funnel(start=today, end=today, article_id=chosen.pk)
        assert split.total.counts["signups"] == 2 and split.total.counts["delivered"] == 2
        assert [row.label for row in split.articles] == [chosen.title]
    both = stats.funnel(start=today, end=today)
    assert {row.label: row.counts["signups"] for row in both.articles} == {
        article.title: 2,
        desk.title: 2,
    }
