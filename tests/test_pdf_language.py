"""Issue 22, suspected: a stored reader PDF named without its language.

A reader signs up in English, gets an email with a download link, then signs up again in
German (the subscriber's language becomes German). The link in each email serves the PDF in
the language of the email that carried it: the English email's link an English PDF, also when
the stored file is gone (a rotated key, a lost storage) and the link renders it anew, and a new
German email's link a German one, never a stale English file."""

from __future__ import annotations

import re
import subprocess

import pytest
from django.core import mail
from django.utils import timezone, translation

from backpain_report.delivery.sending import delivery_send
from backpain_report.models import Delivery
from backpain_report.report import pdfstore
from backpain_report.services import subscribers

pytestmark = pytest.mark.heavy  # whole WeasyPrint renders

ENGLISH, GERMAN = "PREPARED FOR", "ERSTELLT FÜR"


@pytest.fixture(autouse=True)
def _link_mode(settings, tmp_path):
    """Links, and a private storage of this test's own (the stored name of delivery 1 is the
    same in every test database)."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "link"}
    settings.STORAGES = {
        **settings.STORAGES,
        "backpain_report": {
            "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }


def pdf_text(pdf: bytes) -> str:
    result = subprocess.run(
        ["pdftotext", "-l", "1", "-", "-"], input=pdf, capture_output=True, check=True
    )
    return result.stdout.decode()


def link_path(message) -> str:
    url = re.search(r"https?://\S+/download/\S+", message.body).group(0)
    return "/" + url.split("/", 3)[3]


def downloaded(client, path: str) -> str:
    response = client.get(path, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    return pdf_text(response.content)


def sign_up_again_in_german(subscriber, article) -> None:
    with translation.override("de"):
        subscribers.subscriber_signup(
            name=subscriber.name, email=subscriber.email, article=article, publish=False
        )
    subscriber.refresh_from_db()
    assert subscriber.language == "de"


def send_again(delivery: Delivery):
    """The delivery's email once more (a retry after a failure): built in today's language."""
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.PENDING, next_attempt_at=timezone.now(), claimed_at=None
    )
    delivery_send(delivery_id=delivery.pk)
    return mail.outbox[-1]


@pytest.fixture
def english_email(make_subscriber, make_delivery):
    subscriber = make_subscriber(language="en")
    delivery = make_delivery(subscriber=subscriber)
    delivery_send(delivery_id=delivery.pk)
    [message] = mail.outbox
    assert message.body.startswith("Hello ")
    return delivery, link_path(message)


def test_the_english_emails_link_serves_english_after_a_switch_to_german(
    client, article, english_email
):
    delivery, english_link = english_email
    assert ENGLISH in downloaded(client, english_link)
    sign_up_again_in_german(delivery.subscriber, article)
    assert ENGLISH in downloaded(client, english_link)  # the stored file


def test_the_english_emails_link_renders_english_when_the_stored_file_is_gone(
    client, article, english_email
):
    delivery, english_link = english_email
    sign_up_again_in_german(delivery.subscriber, article)
    assert pdfstore.delivery_files_delete([delivery.pk]) >= 1  # a rotated key, a lost storage
    text = downloaded(client, english_link)
    assert ENGLISH in text and GERMAN not in text


def test_a_new_german_email_links_to_a_german_pdf_and_the_old_link_stays_english(
    client, article, english_email
):
    delivery, english_link = english_email
    sign_up_again_in_german(delivery.subscriber, article)
    german_email = send_again(delivery)
    assert german_email.body.startswith("Guten Tag ")
    german_link = link_path(german_email)
    assert GERMAN in downloaded(client, german_link)
    text = downloaded(client, english_link)
    assert ENGLISH in text and GERMAN not in text
    assert GERMAN in downloaded(client, german_link)  # each link its own language, in turn


def test_the_stored_pdfs_name_includes_its_language(make_delivery):
    delivery = make_delivery()
    names = {pdfstore.delivery_pdf_name(delivery, language=code) for code in ("en", "de")}
    assert len(names) == 2


def test_a_link_naming_a_language_the_site_does_not_offer_serves_the_readers(client, make_delivery):
    from django.urls import reverse

    from backpain_report.delivery.tokens import make_download_token

    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    token = make_download_token(delivery, language="xx-unknown")
    text = downloaded(client, reverse("backpain_report:download", args=[token]))
    assert ENGLISH in text
