"""The headers as a real SMTP server receives them: raw DATA bytes, not a parsed message.

Regression (issue 10, item 11): on Django 6.1 the long ``List-Unsubscribe`` URL made Python's
email policy send it as RFC 2047 encoded-words (``=?utf-8?q?=3Chttps=3A//…?=``), which RFC 2369
readers do not decode. Parsing the message with the ``email`` module hides that (it decodes), so
these tests read the bytes an in-process aiosmtpd server got through Django's real SMTP backend.
"""

from __future__ import annotations

import re
import socket
from email import policy
from email.parser import BytesParser

import pytest
from django.urls import reverse

from backpain_report import site
from backpain_report.delivery.sending import Outcome, delivery_send
from backpain_report.delivery.tokens import read_unsubscribe_token
from backpain_report.models import Delivery, Report
from tests.mail_backends import smtp_configure
from tests.realservices.support.smtp import SmtpServer

LONG_SITE_URL = "https://reports.back-pain-relief-guides-for-everyone.example"
TITLE = "Zoë's Guide to Back Pain Muscle Spasms: Your Practical Relief Guide"


@pytest.fixture
def smtp_server(settings):
    """aiosmtpd on a free port, and Django's real SMTP backend pointed at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SmtpServer(port)
    server.start()
    smtp_configure(settings, host=server.host, port=port, timeout=10)
    yield server
    server.stop()


def header_lines(raw: bytes) -> list[bytes]:
    """The physical lines of the top-level header block, CRLF removed."""
    block, separator, _body = raw.partition(b"\r\n\r\n")
    assert separator, "no blank line after the headers"
    return block.split(b"\r\n")


def unfolded(lines: list[bytes]) -> dict[str, list[bytes]]:
    """Each header's physical lines, by lower-cased name (continuations start with WSP)."""
    headers: dict[str, list[bytes]] = {}
    current: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            current.append(line)
        else:
            current = [line]
            headers.setdefault(line.split(b":", 1)[0].decode().lower(), current)
    return headers


@pytest.mark.parametrize("kind", [Delivery.Kind.REPORT, Delivery.Kind.CONFIRMATION])
def test_headers_go_out_raw_and_only_non_ascii_text_is_encoded(
    kind, smtp_server, make_subscriber, make_delivery, report, settings
):
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SITE_URL": LONG_SITE_URL,
        "DELIVERY": "link",
    }
    assert len(LONG_SITE_URL) == 60
    Report.objects.filter(pk=report.pk).update(title=TITLE)
    # The report's subject is short and no longer holds the title: in German it still carries
    # non-ASCII text ("Rückenschmerz").
    language = "de" if kind == Delivery.Kind.REPORT else ""
    subscriber = make_subscriber(name="Zoë Ünal", email="zoe@example.com", language=language)
    delivery = make_delivery(subscriber, kind=kind)

    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT

    [received] = smtp_server.sink.to("zoe@example.com")
    lines = header_lines(received.raw)
    assert all(len(line) <= 998 for line in received.raw.split(b"\r\n"))
    assert all(line.isascii() for line in lines), "raw 8-bit bytes in a header"
    headers = unfolded(lines)
    delivery.refresh_from_db()
    # The one-click URL, whole on one line (its signed token carries a timestamp: read it back).
    assert len(headers["list-unsubscribe"]) == 1, headers["list-unsubscribe"]  # not folded
    [unsubscribe] = headers["list-unsubscribe"]
    match = re.fullmatch(
        rb"List-Unsubscribe: <(https://[^>]+/unsubscribe/([^/>]+)/one-click/)>", unsubscribe
    )
    assert match, unsubscribe
    url, token = match.group(1).decode(), match.group(2).decode()
    assert url == site.absolute(
        reverse("backpain_report:one_click_unsubscribe", args=[token]), subscriber
    )
    assert url.startswith(LONG_SITE_URL + "/")
    assert read_unsubscribe_token(token) == subscriber.pk
    assert len(unsubscribe) > 78  # too long for Python's folder: it used to encode it
    expected = {
        "list-unsubscribe-post": "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "auto-submitted": "Auto-Submitted: auto-generated",
        "message-id": f"Message-ID: {delivery.message_id}",
        "from": "From: Back Pain Reports <reports@example.com>",
        "to": "To: zoe@example.com",
    }
    for name, line in expected.items():
        assert headers[name] == [line.encode()], name  # one physical line, exactly as written
    # Only the subject carries non-ASCII text, and only it is encoded (RFC 2047).
    for name, physical in headers.items():
        if name != "subject":
            assert not any(b"=?" in line for line in physical), name
    parsed = BytesParser(policy=policy.default).parsebytes(received.raw)
    if kind == Delivery.Kind.REPORT:
        # Encoded word by word (ASCII words stay readable), starting on the Subject line itself.
        assert headers["subject"][0].startswith(b"Subject: Ihr kostenloser =?utf-8?q?R=C3=BC")
        assert parsed["Subject"] == "Ihr kostenloser Rückenschmerz-Ratgeber ist da"
    else:
        subject = "Subject: Please confirm your email to get your free report"
        assert headers["subject"] == [subject.encode()]
    assert received.message_id == delivery.message_id


def test_an_idn_site_url_still_sends_or_is_refused_by_a_check(
    make_subscriber, make_delivery, settings
):
    from django.core import mail

    from backpain_report.checks import check_settings

    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SITE_URL": "https://rückenschmerz.example",
    }
    flagged = {m.id for m in check_settings()} & {"backpain_report.E007", "backpain_report.E006"}
    delivery = make_delivery(make_subscriber(email="ann@example.com"))
    result = delivery_send(delivery_id=delivery.pk)
    assert flagged or (result.outcome is Outcome.SENT and len(mail.outbox) == 1), result.error


def test_an_idn_site_url_gives_ascii_links_and_names_the_host_as_written(
    smtp_server, make_subscriber, make_delivery, settings
):
    """Regression (review of issue 10, #9): links carry the host IDNA-encoded (they work, and
    List-Unsubscribe stays ASCII); the text names the host as the site writes it."""
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SITE_URL": "https://Rückenschmerz.example:8443/",
        "DELIVERY": "link",
    }
    origin = "https://xn--rckenschmerz-dlb.example:8443"
    delivery = make_delivery(make_subscriber(email="ann@example.com"))
    assert delivery_send(delivery_id=delivery.pk).outcome is Outcome.SENT

    [received] = smtp_server.sink.to("ann@example.com")
    headers = unfolded(header_lines(received.raw))
    [unsubscribe] = headers["list-unsubscribe"]
    assert unsubscribe.startswith(f"List-Unsubscribe: <{origin}/".encode())
    parsed = BytesParser(policy=policy.default).parsebytes(received.raw)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    links_in_text = re.findall(r"https?://\S+", text)
    assert links_in_text and all(link.startswith(origin + "/") for link in links_in_text)
    assert "on Rückenschmerz.example:8443." in text


def test_the_message_id_salt_outlives_the_module_move():
    """Issue 23 moved emails.py into delivery/: the HMAC salt keeps its old name, or a delivery
    made before an upgrade and retried after it would get a second Message-ID (the docs promise
    one Message-ID per delivery, on every attempt)."""
    from backpain_report.delivery import emails

    assert emails.MESSAGE_ID_SALT == "backpain_report.emails.delivery_message_id"
