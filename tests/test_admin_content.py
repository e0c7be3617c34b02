from django.contrib.auth.models import Permission, User
from django.urls import reverse

from backpain_report.models import Article, Report
from backpain_report.services.content import report_save

PDF = "admin:backpain_report_report_pdf_preview"


def staff(client, *codenames):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)


def report_form(report, **changes):
    data = {
        "title": report.title,
        "subtitle": report.subtitle,
        "slug": report.slug,
        "author": report.author,
        "template_name": report.template_name,
        "body": report.body,
    }
    return {**data, **changes}


def test_article_page_shows_a_sanitised_preview(admin_client, article):
    Article.objects.filter(pk=article.pk).update(body="## Hello\n\n<script>alert(1)</script>")
    url = reverse("admin:backpain_report_article_change", args=[article.pk])
    html = admin_client.get(url).content.decode()
    assert '<div class="backpain-preview"><h2 id="hello">Hello</h2>' in html
    assert "<script>alert(1)</script>" not in html


def test_publish_and_unpublish_actions(admin_client, article):
    url = reverse("admin:backpain_report_article_changelist")
    admin_client.post(url, {"action": "unpublish", "_selected_action": [article.pk]})
    article.refresh_from_db()
    assert article.status == Article.Status.DRAFT
    response = admin_client.post(
        url, {"action": "publish", "_selected_action": [article.pk]}, follow=True
    )
    assert "Published 1 article." in response.content.decode()
    article.refresh_from_db()
    assert article.status == Article.Status.PUBLISHED and article.published_at


def test_publishing_needs_change_permission(client, article):
    staff(client, "view_article")
    url = reverse("admin:backpain_report_article_changelist")
    assert 'value="unpublish"' not in client.get(url).content.decode()
    client.post(url, {"action": "unpublish", "_selected_action": [article.pk]})
    article.refresh_from_db()
    assert article.status == Article.Status.PUBLISHED


def test_editing_the_body_bumps_the_edition(admin_client, report):
    url = reverse("admin:backpain_report_report_change", args=[report.pk])
    edition = report.edition
    response = admin_client.post(url, report_form(report, body=report.body + "\n\nMore."))
    assert response.status_code == 302
    report.refresh_from_db()
    assert report.edition == edition + 1
    admin_client.post(url, report_form(report))  # nothing changed: same edition
    report.refresh_from_db()
    assert report.edition == edition + 1


def test_report_save_bumps_only_for_content(report):
    edition = report.edition
    assert not report_save(report=report, changed_fields=["slug"])
    assert report_save(report=report, changed_fields=["template_name"])
    report.refresh_from_db()
    assert report.edition == edition + 1


def test_two_stale_copies_make_two_editions(report):
    """Two editors open one report and save one after the other: editions 2 then 3."""
    first, second = Report.objects.get(pk=report.pk), Report.objects.get(pk=report.pk)
    edition = report.edition
    first.body += "\n\nFirst editor."
    assert report_save(report=first, changed_fields=["body"])
    second.title += " (revised)"
    assert report_save(report=second, changed_fields=["title"])
    assert (first.edition, second.edition) == (edition + 1, edition + 2)
    report.refresh_from_db()
    assert report.edition == edition + 2
    assert report.title.endswith("(revised)")


def test_pdf_preview_for_a_sample_reader(admin_client, report):
    response = admin_client.get(reverse(PDF, args=[report.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    page = admin_client.get(reverse("admin:backpain_report_report_change", args=[report.pk]))
    assert reverse(PDF, args=[report.pk]) in page.content.decode()


def test_pdf_preview_needs_change_permission(client, report):
    staff(client, "view_report")
    assert client.get(reverse(PDF, args=[report.pk])).status_code == 403
    page = client.get(reverse("admin:backpain_report_report_change", args=[report.pk]))
    assert page.status_code == 200
    assert reverse(PDF, args=[report.pk]) not in page.content.decode()


def test_report_title_and_markdown_fields_get_the_width_they_need(admin_client, report, article):
    """Titles are not cut off ("Your Practica") and the Markdown box is as wide as the
    source's longest line, so its lines do not break raggedly."""
    import re
    from pathlib import Path

    import backpain_report

    url = reverse("admin:backpain_report_report_change", args=[report.pk])
    html = admin_client.get(url).content.decode()
    for name in ("title", "subtitle"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)[0]
        assert "backpain-wide" in tag, tag
    body = re.search(r'<textarea[^>]*name="body"[^>]*>', html)[0]
    assert "backpain-markdown" in body
    seed = Path(backpain_report.__file__).parent / "seed" / "report.md"
    longest = max(len(line) for line in seed.read_text(encoding="utf-8").splitlines())
    assert int(re.search(r'cols="(\d+)"', body)[1]) >= longest
    css = Path(backpain_report.__file__).parent / "static/backpain_report/css/admin.css"
    rules = css.read_text()
    assert ".backpain-wide" in rules and ".backpain-markdown" in rules
    article_url = reverse("admin:backpain_report_article_change", args=[article.pk])
    article_html = admin_client.get(article_url).content.decode()
    assert re.search(r'<input[^>]*name="title"[^>]*backpain-wide', article_html)
