"""Delivery modes (attach, link, both), the size fall-back, and the download link."""

import datetime
import io

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader

from backpain_report.delivery.emails import build_report_email
from backpain_report.delivery.sending import delivery_send
from backpain_report.delivery.tokens import make_download_token
from backpain_report.models import Delivery
from backpain_report.selectors import subscriber_language


def mode(settings, value, **extra):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": value, **extra}


def download_path(delivery):
    """The link an email to ``delivery`` carries: it names the email's language (issue 22)."""
    token = make_download_token(delivery, language=subscriber_language(delivery.subscriber))
    return reverse("backpain_report:download", args=[token])


def test_attach_mode_attaches_and_has_no_link(make_delivery, settings):
    mode(settings, "attach")
    delivery_send(delivery_id=make_delivery().pk)
    message = mail.outbox[0]
    assert len(message.attachments) == 1
    assert "/download/" not in message.body


# A token holds the second it was signed in: the test's own must be made in the same second.
FROZEN = datetime.datetime(2026, 3, 2, 9, 30, tzinfo=datetime.timezone.utc)


def test_link_mode_sends_a_link_and_no_attachment(make_delivery, settings):
    mode(settings, "link")
    delivery = make_delivery()
    with time_machine.travel(FROZEN, tick=False):
        delivery_send(delivery_id=delivery.pk)
        path = download_path(delivery)
    message = mail.outbox[0]
    assert not message.attachments
    assert f"https://reports.example.com{path}" in message.body
    assert path in message.alternatives[0][0]


def test_both_mode(make_delivery, settings):
    mode(settings, "both")
    delivery = make_delivery()
    with time_machine.travel(FROZEN, tick=False):
        delivery_send(delivery_id=delivery.pk)
        path = download_path(delivery)
    message = mail.outbox[0]
    assert len(message.attachments) == 1 and path in message.body


def test_too_big_for_email_falls_back_to_a_link(make_delivery, settings):
    mode(settings, "attach", MAX_EMAIL_SIZE=100_000)
    delivery = make_delivery()
    message = build_report_email(
        delivery=delivery, pdf=b"%PDF" + b"x" * 200_000, message_id="<m@x>"
    )
    assert not message.attachments and download_path(delivery) in message.body
    assert len(message.message().as_bytes()) < 100_000


def test_download_streams_the_pdf_and_records_the_first_download(client, make_delivery):
    delivery = make_delivery(status=Delivery.Status.SENT)
    response = client.get(download_path(delivery))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert "inline" in response["Content-Disposition"]
    delivery.refresh_from_db()
    first = delivery.downloaded_at
    assert first is not None
    client.get(download_path(delivery))
    delivery.refresh_from_db()
    assert delivery.downloaded_at == first


def test_download_link_expires(client, make_delivery):
    delivery = make_delivery()
    path = download_path(delivery)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=31)
    with time_machine.travel(later):
        response = client.get(path)
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_download_link_revoke_and_reissue_from_the_admin(
    admin_client, client, make_delivery, no_broker, django_capture_on_commit_callbacks
):
    delivery = make_delivery(status=Delivery.Status.SENT)
    old = download_path(delivery)
    url = reverse("admin:backpain_report_delivery_changelist")
    admin_client.post(url, {"action": "revoke_links", "_selected_action": [delivery.pk]})
    assert client.get(old).status_code == 410
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "reissue_links", "_selected_action": [delivery.pk]})
    new = Delivery.objects.exclude(pk=delivery.pk).get()
    assert new.reason == "resend" and no_broker == [new.pk]
    assert client.get(download_path(new)).status_code == 200


def test_tampered_download_token_is_400(client, make_delivery):
    response = client.get(download_path(make_delivery()).replace("/download/", "/download/x"))
    assert response.status_code == 400


def test_unsubscribed_reader_link_stops_working(client, make_delivery):
    delivery = make_delivery()
    path = download_path(delivery)
    delivery.subscriber.unsubscribed_at = timezone.now()
    delivery.subscriber.save()
    assert client.get(path).status_code == 410


def test_a_refused_link_is_kept_by_no_shared_cache(client, make_delivery):
    """Attack (the Varnish tier): the 410 of a link refused because its reader unsubscribed
    carried no Cache-Control, so a stock Varnish kept it (a 410 is cacheable by default) and
    went on refusing the link after the reader signed up again. Every answer of the download,
    the refusals (400, 410) included, is ``private, no-cache``."""
    delivery = make_delivery(status=Delivery.Status.SENT)
    path = download_path(delivery)
    subscriber = delivery.subscriber
    subscriber.unsubscribed_at = timezone.now()
    subscriber.save()
    refused = client.get(path)
    assert refused.status_code == 410 and refused["Cache-Control"] == "private, no-cache"
    assert client.head(path)["Cache-Control"] == "private, no-cache"
    tampered = client.get(path.replace("/download/", "/download/x"))
    assert tampered.status_code == 400 and tampered["Cache-Control"] == "private, no-cache"
    subscriber.unsubscribed_at = None  # signed up again: the same link works again
    subscriber.save()
    works = client.get(path)
    assert works.status_code == 200 and works["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize("value", ["attach", "link", "both"])
def test_every_mode_passes_the_checks(settings, value):
    from backpain_report.checks import check_settings

    settings.DEBUG = True  # (W003, a per-process throttle cache, is not the point here)
    mode(settings, value)
    assert not check_settings()
    mode(settings, "fax")
    assert {m.id for m in check_settings()} == {"backpain_report.E012"}


def test_an_attachment_is_named_by_the_edition_it_holds(make_delivery, report, settings):
    mode(settings, "attach")
    delivery = make_delivery()  # queued for edition 1
    report.edition = 2  # edited before it is sent (e.g. during a retry's backoff)
    report.save()
    delivery_send(delivery_id=delivery.pk)
    [(filename, content, _type)] = mail.outbox[0].attachments
    assert filename == "back-pain-relief-guide-edition-2.pdf"
    cover = PdfReader(io.BytesIO(content)).pages[0].extract_text()
    assert "Edition 2" in cover  # what the name says is what it holds
