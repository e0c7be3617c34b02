"""Where readers come from: utm_* and the referring host, from the article page to the export."""

from __future__ import annotations

import csv
import datetime
import io
import re
from pathlib import Path

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from backpain_report import stats
from backpain_report.models import Delivery, PageView, PendingSignup, Subscriber
from backpain_report.page.sources import (
    MAX_UTM_LENGTH,
    SOURCE_FIELDS,
    host_clean,
    referrer_host,
    source_label,
    utm_clean,
)
from backpain_report.rights.export import subscriber_csv_lines

UTM = "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-2026"
REFERER = "https://www.example.org/some/path?reader=ann@example.com#frag"


def hidden(html: str, name: str) -> str | None:
    """The value of the hidden input ``name`` in ``html`` (None if absent)."""
    match = re.search(rf'<input type="hidden" name="{name}"([^>]*)>', html)
    if match is None:
        return None
    value = re.search(r'value="([^"]*)"', match.group(1))
    return value.group(1) if value else ""


def signup_data(**extra: str) -> dict[str, str]:
    return {"name": "Ann", "email": "ann@example.com", "consent": "on", **extra}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("newsletter", "newsletter"),
        ("  spaced   out  ", "spaced out"),
        ('<script>alert("x")</script>', "scriptalert(x)/script"),
        ("=HYPERLINK(1)", "HYPERLINK(1)"),
        ("nul\x00and\r\nnewline", "nulandnewline"),
        ("x" * 10_000, "x" * MAX_UTM_LENGTH),
        ("Frühling-2026", "Frühling-2026"),
        (["a", "list"], ""),
        (None, ""),
    ],
)
def test_utm_values_are_cleaned_and_cut_never_refused(value, expected):
    assert utm_clean(value) == expected


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        (REFERER, "www.example.org"),
        ("http://News.Example.COM:8080/x", "news.example.com"),
        ("https://reports.example.com/back-pain/", ""),  # the site's own pages
        ("android-app://com.google.android.gm/", ""),
        ("javascript:alert(1)", ""),
        ("http://[::1", ""),
        ("https://user:secret@evil.example/", "evil.example"),
        ("https://" + "a" * 300 + ".com/", ""),
        ("https://exa mple.com/", ""),
        ("", ""),
    ],
)
def test_referrer_is_reduced_to_a_foreign_host(referer, expected):
    assert referrer_host(referer, own_host="reports.example.com") == expected


def test_host_clean_refuses_what_is_not_a_host_name():
    assert host_clean("Example.COM.") == "example.com"
    assert host_clean("<b>x</b>") == host_clean("a..b") == host_clean(3) == ""


def test_source_label_prefers_utm_then_host_then_direct():
    assert source_label({"utm_source": "news", "utm_campaign": "spring"}) == "news / spring"
    assert source_label({"utm_medium": "email", "referrer_host": "x.org"}) == "x.org"
    assert source_label({}) == "(direct)"


@pytest.mark.django_db
def test_the_article_page_is_the_same_whatever_its_query_or_referrer(client, article):
    """Nothing of the reader's address or referrer is in the page: the browser fills the
    source fields (signup.js), so a shared cache may serve the page to everyone."""
    url = article.get_absolute_url()
    plain = client.get(url).content
    tagged = client.get(url + UTM, HTTP_REFERER=REFERER).content
    hostile = client.get(
        url + "?utm_source=%22%3E%3Cscript%3Ealert(1)%3C/script%3E&utm_medium=%00",
        HTTP_REFERER="https://[::1/\x7f",
    )
    assert hostile.status_code == 200
    assert plain == tagged == hostile.content
    html = plain.decode()
    assert all(hidden(html, name) == "" for name in ("utm_source", "referrer_host"))
    # The hidden fields are inside the form, and the script fills them from the page's address
    # and referrer before the form is posted (as FormData, so the JavaScript submit carries
    # them as the plain one does).
    form = re.search(r'<form[^>]*id="backpain-report-signup".*?</form>', html, re.S).group(0)
    assert all(hidden(form, name) is not None for name in ("utm_source", "referrer_host"))
    script = (
        (Path(__file__).resolve().parent.parent / "backpain_report/static/backpain_report/js")
        .joinpath("signup.js")
        .read_text()
    )
    assert "new URLSearchParams(window.location.search)" in script
    assert "new URL(document.referrer).hostname" in script
    assert "new URLSearchParams(new FormData(form))" in script


@pytest.mark.django_db
def test_a_page_view_stores_nothing_about_the_visitor(client, article):
    """No cookie and no row: a visit alone leaves nothing (views are counted by the beacon)."""
    url = article.get_absolute_url()
    tagged = client.get(url + UTM, HTTP_REFERER=REFERER, HTTP_USER_AGENT="Mozilla/5.0")
    assert not tagged.cookies
    assert not Subscriber.objects.exists() and not PendingSignup.objects.exists()
    assert not PageView.objects.exists()


@pytest.mark.django_db
def test_signup_keeps_the_source_the_script_filled_in_with_the_consent_record(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    fields = {
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring-2026",
        "referrer_host": "www.example.org",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("backpain_report:signup"),
            signup_data(article=article.slug, **fields),
            HTTP_REFERER="http://testserver" + article.get_absolute_url() + "?utm_source=other",
        )
    assert response.status_code == 303
    subscriber = Subscriber.objects.get()
    assert (
        subscriber.utm_source,
        subscriber.utm_medium,
        subscriber.utm_campaign,
        subscriber.referrer_host,
    ) == ("newsletter", "email", "spring-2026", "www.example.org")  # the form's, not Referer's
    assert subscriber.consent_text  # the same record


@pytest.mark.django_db
def test_without_javascript_the_utm_come_from_the_posts_referer(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    """The no-JS form posts empty source fields; its Referer is the article's URL with the
    query string it was opened with (the default referrer policy, same origin)."""
    query = "?utm_source=newsletter&utm_medium=email&utm_campaign=%3Cb%3Espring&utm_campaign=x"
    page = "http://testserver" + article.get_absolute_url() + query
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("backpain_report:signup"),
            signup_data(article=article.slug, utm_source="", referrer_host="testserver"),
            HTTP_REFERER=page,
        )
    assert response.status_code == 303
    subscriber = Subscriber.objects.get()
    assert (subscriber.utm_source, subscriber.utm_medium) == ("newsletter", "email")
    assert subscriber.utm_campaign == "bspring"  # the first value, cleaned
    assert subscriber.referrer_host == ""  # the site's own host is no source


@pytest.mark.django_db
def test_the_pending_signup_holds_the_source_until_the_worker_runs(client, article, monkeypatch):
    from backpain_report.services import subscribers

    monkeypatch.setattr(subscribers, "publish_signup_on_commit", lambda pk: None)
    client.post(reverse("backpain_report:signup"), signup_data(utm_source="ads", utm_medium="cpc"))
    pending = PendingSignup.objects.get()
    assert (pending.utm_source, pending.utm_medium, pending.referrer_host) == ("ads", "cpc", "")
    result = subscribers.signup_process(signup_id=pending.pk)
    assert result.subscriber.utm_source == "ads" and result.subscriber.utm_medium == "cpc"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {"utm_source": "x" * 100_000},
        {"utm_source": "\x00\x01<>\"'", "referrer_host": "\x00"},
        {"referrer_host": "not a host/at all"},
        {"utm_campaign": "=cmd|' /C calc'!A0"},
    ],
)
def test_hostile_source_fields_are_cleaned_not_refused(
    client, article, no_broker, django_capture_on_commit_callbacks, extra
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("backpain_report:signup"), signup_data(**extra))
    assert response.status_code == 303
    subscriber = Subscriber.objects.get()
    assert len(subscriber.utm_source) <= MAX_UTM_LENGTH
    assert subscriber.referrer_host == ""
    for name in ("utm_source", "utm_medium", "utm_campaign"):
        assert not re.search(r"[\x00-\x1f<>\"'=|!]", getattr(subscriber, name))


@pytest.mark.django_db
def test_a_form_with_errors_keeps_its_source(client, article):
    response = client.post(
        reverse("backpain_report:signup"),
        signup_data(email="nope", article=article.slug, utm_source="news", referrer_host="x.org"),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert hidden(html, "utm_source") == "news" and hidden(html, "referrer_host") == "x.org"


@pytest.mark.django_db
def test_without_javascript_a_form_with_errors_keeps_the_source_of_its_referer(
    client, article, no_broker, django_capture_on_commit_callbacks
):
    """No script: the first POST's Referer is the article's address with its utm_*. The form
    shown again with errors is at the sign-up's address, which has none, so the next POST's
    Referer has none either: the hidden fields must carry the source from the first POST."""
    signup = reverse("backpain_report:signup")
    page = "http://testserver" + article.get_absolute_url() + UTM
    response = client.post(
        signup, signup_data(email="nope", article=article.slug), HTTP_REFERER=page
    )
    html = response.content.decode()
    assert response.status_code == 200 and "Enter a valid email address." in html
    fields = {name: hidden(html, name) or "" for name in SOURCE_FIELDS}
    assert fields == {
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "spring-2026",
        "referrer_host": "",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            signup,
            signup_data(article=article.slug, **fields),
            HTTP_REFERER="http://testserver" + signup,  # the page with the errors
        )
    assert response.status_code == 303
    subscriber = Subscriber.objects.get()
    assert (subscriber.utm_source, subscriber.utm_medium, subscriber.utm_campaign) == (
        "newsletter",
        "email",
        "spring-2026",
    )


@pytest.mark.django_db
def test_the_template_tag_on_any_page_is_the_same_for_every_reader(article):
    template = Template('{% load backpain_report %}{% report_signup_form "' + article.slug + '" %}')
    tagged = RequestFactory().get("/any/page/" + UTM, HTTP_REFERER=REFERER)
    html = template.render(Context({"request": tagged}))
    assert html == template.render(Context({"request": RequestFactory().get("/")}))
    assert hidden(html, "utm_campaign") == hidden(html, "referrer_host") == ""
    assert hidden(html, "article") == article.slug
    assert "csrfmiddlewaretoken" not in html and not tagged.META.get("CSRF_COOKIE_NEEDS_UPDATE")


@pytest.mark.django_db
def test_funnel_and_export_split_by_source(make_subscriber, make_delivery):
    now = timezone.now()
    news = [make_subscriber(utm_source="news", utm_medium="email") for _ in range(3)]
    make_subscriber(referrer_host="forum.example.net")
    make_subscriber()
    for subscriber in news[:2]:
        make_delivery(subscriber, status=Delivery.Status.SENT, sent_at=now, downloaded_at=now)
    Subscriber.objects.filter(pk=news[0].pk).update(unsubscribed_at=now)
    today = timezone.localdate()
    funnel = stats.funnel(start=today - datetime.timedelta(days=6), end=today)
    rows = {row.label: row.counts for row in funnel.sources}
    assert list(rows) == ["news / email", "(direct)", "forum.example.net"]
    assert rows["news / email"] | {} == {
        "views": 0,
        "signups": 3,
        "confirmations": 0,
        "delivered": 2,
        "downloads": 2,
        "unsubscribes": 1,
        "suppressed": 0,
    }
    assert rows["(direct)"]["signups"] == rows["forum.example.net"]["signups"] == 1
    assert sum(row["signups"] for row in rows.values()) == funnel.total.counts["signups"]

    lines = list(csv.reader(io.StringIO("".join(subscriber_csv_lines(Subscriber.objects.all())))))
    header = lines[0]
    assert header[-5:-1] == ["utm_source", "utm_medium", "utm_campaign", "referrer_host"]
    by_source = {
        (row[header.index("utm_source")], row[header.index("referrer_host")]) for row in lines[1:]
    }
    assert by_source == {("news", ""), ("", "forum.example.net"), ("", "")}


@pytest.mark.django_db
def test_the_admin_funnel_shows_views_and_sign_ups_per_source(admin_client, make_subscriber):
    make_subscriber(utm_source="news", utm_medium="email")
    make_subscriber(referrer_host="forum.example.net")
    html = admin_client.get(reverse("admin:backpain_report_pageview_changelist")).content.decode()
    table = re.search(r'<table id="funnel-sources">.*?</table>', html, re.S).group(0)
    cells = re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", table)
    assert cells[:2] == ["Source", "Page views"]  # views per source first
    assert "news / email" in cells and "forum.example.net" in cells
    row = re.search(r'<th scope="row">news / email</th>(.*?)</tr>', table, re.S).group(1)
    counts = re.findall(r'<td class="num">(\d+)', row)
    assert counts[:2] == ["0", "1"]  # no view counted by a beacon here, one sign-up
