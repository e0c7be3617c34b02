"""The report email leads somewhere: a short subject, the cover and a download button.

Issue 22, item 10: the subject fits a phone in English and German whatever the report's title,
the default ``DELIVERY`` sends a signed download link (so the funnel's Downloads column counts
something), and the email shows the cover above a button that works in mail clients.
"""

import re
from html.parser import HTMLParser

import pytest
from django.core import mail
from django.utils import translation

from backpain_report import site
from backpain_report.conf import DEFAULTS
from backpain_report.delivery.emails import build_report_email
from backpain_report.delivery.sending import delivery_send
from backpain_report.models import Article, Report
from backpain_report.page import offer

SUBJECT_MAX = 55
SITE = "https://reports.example.com"


def mode(settings, value, **extra):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": value, **extra}


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each ``<a>``."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.link_texts: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        if tag == "a":
            self._href = attributes.get("href")
            self.link_texts.setdefault(self._href, "")

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None

    def handle_data(self, data):
        if self._href is not None:
            self.link_texts[self._href] += data


def elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def built(delivery, *, pdf: bytes | None = b"%PDF-1.7 small"):
    return build_report_email(delivery=delivery, pdf=pdf, message_id="<1.x@example.com>")


# ---- The subject ------------------------------------------------------------------------------


def assert_phone_subject(subject: str) -> None:
    assert len(subject) <= SUBJECT_MAX, (len(subject), subject)
    assert "::" not in subject and subject.count(":") <= 1, subject


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Your free back pain report is here"),
        ("de", "Ihr kostenloser Rückenschmerz-Ratgeber ist da"),
    ],
)
def test_the_subject_of_the_bundled_report_fits_a_phone(make_delivery, language, expected):
    delivery = make_delivery()
    assert delivery.report.title == "Back Pain Muscle Spasms: Your Practical Relief Guide"
    with translation.override(language):
        subject = built(delivery).subject
    assert_phone_subject(subject)
    assert subject == expected


@pytest.mark.parametrize("language", ["en", "de"])
def test_the_subject_stays_short_whatever_the_title(make_delivery, report, language):
    Report.objects.filter(pk=report.pk).update(title="Stretches: Part One: " + "Long " * 38)
    delivery = make_delivery()
    delivery.report.refresh_from_db()
    with translation.override(language):
        assert_phone_subject(built(delivery).subject)


def test_the_sent_email_has_the_short_subject(make_delivery):
    delivery_send(delivery_id=make_delivery().pk)
    assert mail.outbox[0].subject == "Your free back pain report is here"


# ---- The default delivery mode ----------------------------------------------------------------


def test_the_default_delivery_is_a_link():
    assert DEFAULTS["DELIVERY"] == "link"


def test_by_default_the_email_carries_a_link_and_no_attachment(make_delivery):
    delivery_send(delivery_id=make_delivery().pk)
    [message] = mail.outbox
    assert message.attachments == []
    assert f"{SITE}/back-pain/download/" in message.body


def test_a_link_keeps_the_message_small(make_delivery, settings):
    """Docs: a message with the bundled report attached is some 40 times one with the link."""
    sizes = {}
    for value in ("link", "attach"):
        mode(settings, value)
        mail.outbox.clear()
        delivery_send(delivery_id=make_delivery().pk)
        sizes[value] = len(mail.outbox[0].message().as_bytes())
    assert sizes["link"] < 16_000
    assert sizes["attach"] > 20 * sizes["link"]


# ---- The cover and the button -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["link", "both"])
def test_the_html_shows_the_cover_above_a_download_button(make_delivery, settings, value):
    mode(settings, value)
    delivery = make_delivery()
    message = built(delivery)
    html = message.alternatives[0][0]
    download = re.search(r'href="(https://reports\.example\.com/back-pain/download/[^"]+)"', html)
    assert download is not None
    url = download.group(1)
    found = elements(html)
    cover = SITE + offer.cover_path(delivery.report)
    [image] = [attrs for tag, attrs in found.tags if tag == "img"]
    assert image["src"] == cover  # absolute, on SITE_URL
    assert image["alt"] == f"Cover of {delivery.report.title}"
    assert image["width"] == "160" and image["border"] == "0"  # no link border in old clients
    # The picture is a link to the PDF too, and comes before the button.
    assert html.index(f'href="{url}"') < html.index(cover) < html.rindex(f'href="{url}"')
    # The button: a real link in a table cell with a background colour (no JS, no <button>,
    # no stylesheet), its text saying what it gives.
    assert found.link_texts[url].strip() == "Download your report (PDF)"
    assert "<button" not in html and "<script" not in html and "<link" not in html
    assert "<style" not in html
    button = re.search(r'<td[^>]*bgcolor="#1d5c63"[^>]*>\s*<a href="' + re.escape(url), html)
    assert button is not None, "the button is a link in a coloured table cell"
    # The plain text says the same, with the link on a line of its own.
    assert f"\n{url}\n" in message.body
    assert "Download your report (PDF):" in message.body


def test_the_cover_url_is_absolute_without_site_url_too(make_delivery, settings):
    """Without ``SITE_URL`` the reader's sign-up page says where the site is, as for the
    other links."""
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SITE_URL": None,
        "DELIVERY": "link",
    }
    delivery = make_delivery()
    html = built(delivery).alternatives[0][0]
    base = site.site_url(delivery.subscriber)
    assert base == SITE  # the fixture's source_url
    assert f'src="{base}{offer.cover_path(delivery.report)}"' in html


def test_attach_mode_shows_the_cover_and_no_link(make_delivery, settings):
    """``"attach"`` is the owner's choice of no link (and no stored copy of the reader's PDF):
    the cover still shows what is attached."""
    mode(settings, "attach")
    delivery = make_delivery()
    message = built(delivery)
    html = message.alternatives[0][0]
    assert len(message.attachments) == 1
    assert "/download/" not in html and "/download/" not in message.body
    assert f'src="{SITE}{offer.cover_path(delivery.report)}"' in html
    assert "Download your report" not in html


def test_no_cover_when_no_published_article_offers_the_report(make_delivery, settings, article):
    """The cover's URL answers 404 then: the email shows no broken picture, only the button."""
    mode(settings, "link")
    Article.objects.filter(pk=article.pk).update(status=Article.Status.DRAFT)
    html = built(make_delivery()).alternatives[0][0]
    assert "<img" not in html
    assert "Download your report (PDF)" in html


def test_german_button_and_alt_text(make_delivery, settings):
    mode(settings, "link")
    delivery = make_delivery()
    with translation.override("de"):
        message = built(delivery)
    html = message.alternatives[0][0]
    assert "Ratgeber herunterladen (PDF)" in html
    assert f'alt="Titelseite von {delivery.report.title}"' in html
    assert "Ratgeber herunterladen (PDF):" in message.body


# ---- An expired link ----------------------------------------------------------------------


def _sign_up_and_send(article) -> str:
    """Sign Ann up, send her report; the download link in her latest email."""
    from backpain_report.services import subscribers

    result = subscribers.subscriber_signup(
        name="Ann", email="ann@example.com", article=article, publish=False
    )
    if result.delivery is not None and result.delivery.status == "pending":
        delivery_send(delivery_id=result.delivery.pk)
    return re.search(r"https://\S+/download/\S+", mail.outbox[-1].body).group(0)


def test_an_expired_link_is_replaced_by_signing_up_again(article, client, settings):
    """The expired link's page says "sign up again and we will send you a fresh copy": the
    reader who does so gets a new email with a working link, though they had the edition."""
    import datetime

    import time_machine
    from django.utils import timezone

    mode(settings, "link", THROTTLE_ADDRESS_WINDOW=3600)
    start = timezone.now()
    first = _sign_up_and_send(article)
    path = first.removeprefix(SITE)
    assert client.get(path).status_code == 200
    max_age = datetime.timedelta(seconds=DEFAULTS["DOWNLOAD_MAX_AGE"])
    with time_machine.travel(start + datetime.timedelta(days=2), tick=False):
        _sign_up_and_send(article)  # the link still works: nothing new
        assert len(mail.outbox) == 1
    with time_machine.travel(start + max_age + datetime.timedelta(hours=1), tick=False):
        expired = client.get(path)
        assert expired.status_code == 410
        assert "Sign up again with the same address" in expired.content.decode()
        fresh = _sign_up_and_send(article)
        assert len(mail.outbox) == 2 and fresh != first
        assert client.get(fresh.removeprefix(SITE)).status_code == 200
