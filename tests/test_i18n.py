"""Any language: the app's own texts come from its catalogue, the German one ships complete, and
a reader's emails and report are written in the language they signed up in (also when a worker,
a resend or the sweep sends them).

The check for untranslated text compares a German render against the catalogue's English
msgids: no run of four or more words of any msgid may appear verbatim, except where the same
words are in the seed article or report (the editor's content, which is not translated).
"""

from __future__ import annotations

import ast
import gettext
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.test import override_settings
from django.urls import reverse
from django.utils import translation

from backpain_report import seed, selectors
from backpain_report.delivery import sending
from backpain_report.models import Delivery, PendingSignup, Subscriber
from backpain_report.services import deliveries, subscribers

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backpain_report"
LOCALE = PACKAGE / "locale"
CATALOGUE = LOCALE / "de" / "LC_MESSAGES" / "django.po"
LOCALE_MIDDLEWARE = [
    *settings.MIDDLEWARE[:2],
    "django.middleware.locale.LocaleMiddleware",
    *settings.MIDDLEWARE[2:],
]
# Placeholders and markup split a msgid into the runs of words compared with the output.
_SPLIT = re.compile(r"%\([a-z_]+\)[sd]|%[sd]|%%|<[^>]+>|\"")


def po_entries(path: Path = CATALOGUE) -> list[dict[str, str]]:
    """The entries of a .po file: ``msgctxt``, ``msgid``, ``msgid_plural``, ``msgstr``,
    ``msgstr[0]``... (a small reader: the catalogue is plain, and polib is no dependency)."""
    entries: list[dict[str, str]] = []
    entry: dict[str, str] = {}
    key = ""
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if entry:
                entries.append(entry)
            entry, key = {}, ""
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[key] += ast.literal_eval(line)
        else:
            key, _, value = line.partition(" ")
            entry[key] = ast.literal_eval(value)
    return [e for e in entries if e.get("msgid")]


def english_runs() -> set[str]:
    """Every run of four or more words in the catalogue's msgids (singular and plural)."""
    runs = set()
    for entry in po_entries():
        for text in (entry["msgid"], entry.get("msgid_plural", "")):
            for part in _SPLIT.split(text):
                part = " ".join(part.split()).strip(" ,.:;()")
                if len(part.split()) >= 4:
                    runs.add(part)
    return runs


def seed_text() -> str:
    fields = {**seed.article_fields(), **seed.report_fields()}
    return normalise(" ".join(str(value) for value in fields.values()))


def normalise(text: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(text.replace("\u00ad", "").split())


def untranslated(output: str) -> list[str]:
    """The app's English runs of words found in ``output`` (not counting the seed content)."""
    found = normalise(output)
    content = seed_text()
    return sorted(run for run in english_runs() if run in found and run not in content)


def pdf_text(pdf: bytes) -> str:
    result = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return result.stdout.decode()


# ---- The catalogue --------------------------------------------------------------------------


def test_the_german_catalogue_is_complete_and_compiled() -> None:
    entries = po_entries()
    assert len(entries) > 250
    empty = [
        e["msgid"]
        for e in entries
        if not (e.get("msgstr") or (e.get("msgstr[0]") and e.get("msgstr[1]")))
    ]
    assert not empty, empty
    assert "#, fuzzy" not in CATALOGUE.read_text(encoding="utf-8")
    # The shipped .mo is the compiled .po: every msgid translates as the .po says.
    with CATALOGUE.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in entries:
        msgid = entry["msgid"]
        if "msgctxt" in entry:
            msgid = f"{entry['msgctxt']}\x04{msgid}"
        if "msgid_plural" in entry:
            got = compiled.ngettext(msgid, entry["msgid_plural"], 5)
            assert got == entry["msgstr[1]"], msgid
        else:
            assert compiled.gettext(msgid) == entry["msgstr"], msgid


def test_the_catalogue_lists_every_text_the_app_marks(tmp_path: Path) -> None:
    """``makemessages`` run again finds no msgid the shipped catalogue lacks."""
    copy = tmp_path / "backpain_report"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # As the docs say: run in the package's folder (django-admin, not ``python -m``, so the
    # package's own modules do not shadow the standard library's).
    django_admin = Path(sys.executable).parent / "django-admin"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [str(django_admin), "makemessages", "-l", "de", "-e", "html,txt,py,css"],
        cwd=copy,
        check=True,
        capture_output=True,
        env=env,
    )
    fresh_po = copy / CATALOGUE.relative_to(PACKAGE)
    fresh = {(e.get("msgctxt"), e["msgid"]) for e in po_entries(fresh_po)}
    shipped = {(e.get("msgctxt"), e["msgid"]) for e in po_entries()}
    assert fresh <= shipped, fresh - shipped


def test_the_check_finds_english_in_an_english_render(client, article) -> None:
    """The comparison is not vacuous: the English page is full of the app's msgids."""
    page = client.get(article.get_absolute_url()).content.decode()
    assert len(untranslated(page)) >= 5


# ---- Pages, emails and the PDF in German ----------------------------------------------------


@pytest.fixture
def german_site():
    with override_settings(MIDDLEWARE=LOCALE_MIDDLEWARE, LANGUAGE_CODE="en-us"):
        yield


def test_the_article_page_in_german_has_no_english_from_the_app(
    client, article, german_site
) -> None:
    response = client.get(article.get_absolute_url(), HTTP_ACCEPT_LANGUAGE="de")
    page = response.content.decode()
    assert '<html lang="de">' in page
    assert "Kostenlosen Ratgeber anfordern" in page
    assert "Ihre E-Mail-Adresse" in page
    assert 'data-bpr-correct-one="Bitte korrigieren Sie diese Angabe' in page
    assert untranslated(page) == []


@pytest.mark.parametrize(
    "name",
    ["signup", "signup_done", "unsubscribe_invalid", "confirm_invalid", "download_invalid"],
)
def test_every_page_in_german_has_no_english_from_the_app(
    client, article, german_site, name
) -> None:
    url = {
        "signup": reverse("backpain_report:signup"),
        "signup_done": reverse("backpain_report:signup_done"),
        "unsubscribe_invalid": reverse("backpain_report:unsubscribe", args=["bad"]),
        "confirm_invalid": reverse("backpain_report:confirm", args=["bad"]),
        "download_invalid": reverse("backpain_report:download", args=["bad"]),
    }[name]
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code < 500
    assert untranslated(response.content.decode()) == []


def test_form_errors_in_german(client, article, german_site) -> None:
    response = client.post(
        reverse("backpain_report:signup"),
        {"name": "www.example.com", "email": "nope", "article": article.slug},
        HTTP_ACCEPT_LANGUAGE="de",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    no_addresses = "Bitte geben Sie nur Ihren Namen ein \u2013 keine Web- oder E-Mail-Adressen."
    assert errors["name"] == [no_addresses]
    assert errors["email"] == ["Bitte geben Sie eine gültige E-Mail-Adresse ein."]


def _sign_up_in_german(client, article) -> Delivery:
    response = client.post(
        reverse("backpain_report:signup"),
        {"name": "Jana", "email": "jana@example.com", "consent": "on", "article": article.slug},
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert response.status_code == 303
    subscriber = Subscriber.objects.get(email="jana@example.com")
    assert subscriber.language == "de"
    assert subscriber.consent_text.startswith("Ja, senden Sie mir")  # as the reader saw it
    return subscriber.deliveries.get()


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "DELIVERY": "both"})
def test_the_report_email_and_pdf_follow_the_sign_up_language(
    client, article, german_site, no_broker
) -> None:
    delivery = _sign_up_in_german(client, article)
    translation.deactivate()  # the worker: no request, no language active
    assert translation.get_language() == "en-us"
    assert sending.delivery_send(delivery_id=delivery.pk).outcome is sending.Outcome.SENT
    [message] = mail.outbox
    assert message.subject == "Ihr kostenloser Rückenschmerz-Ratgeber ist da"
    assert message.body.startswith("Guten Tag Jana,")
    assert untranslated(message.body) == []
    html_body = message.alternatives[0][0]
    assert '<html lang="de">' in html_body
    assert untranslated(html_body) == []
    [(_filename, pdf, _type)] = message.attachments
    text = pdf_text(pdf)
    for german in ("ERSTELLT FÜR", "Inhalt", "Wie es weitergeht", "Quellen", "Wichtige Hinweise"):
        assert german in text, german
    assert re.search(r"Seite 2 von \d+", text)
    assert untranslated(text) == []
    # The download link serves the same language, whatever the browser asks for.
    link = re.search(r"https?://\S+/download/\S+", message.body).group(0)
    response = client.get(link.split("testserver", 1)[-1], HTTP_ACCEPT_LANGUAGE="en")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert "ERSTELLT FÜR" in pdf_text(body)


@override_settings(BACKPAIN_REPORT={"FROM_EMAIL": "r@example.com", "DOUBLE_OPT_IN": True})
def test_the_confirmation_email_follows_the_sign_up_language(
    client, article, german_site, no_broker
) -> None:
    delivery = _sign_up_in_german(client, article)
    assert delivery.kind == Delivery.Kind.CONFIRMATION
    sending.delivery_send(delivery_id=delivery.pk)
    [message] = mail.outbox
    assert message.subject.startswith("Bitte bestätigen Sie Ihre E-Mail-Adresse")
    assert untranslated(message.body) == []
    assert untranslated(message.alternatives[0][0]) == []


def test_a_resend_is_written_in_the_readers_language(make_subscriber, report, settings) -> None:
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}
    subscriber = make_subscriber(language="de")
    delivery = deliveries.delivery_resend(subscriber=subscriber, publish=False)
    with translation.override("en"):  # a staff member's English admin session
        sending.delivery_send(delivery_id=delivery.pk)
    [message] = mail.outbox
    assert message.subject == "Ihr kostenloser Rückenschmerz-Ratgeber ist da"
    assert "ERSTELLT FÜR" in pdf_text(message.attachments[0][1])


def test_a_sign_up_left_for_the_sweep_keeps_its_language(article, monkeypatch) -> None:
    """The message was lost: the sweep's re-published sign-up is processed by a worker with no
    language active, and the reader still gets German."""
    monkeypatch.setattr(subscribers, "publish_signup_on_commit", lambda pk: None)
    with translation.override("de"):
        pending = subscribers.signup_submit(name="Jana", email="jana@example.com", article=article)
    assert PendingSignup.objects.get(pk=pending.pk).language == "de"
    result = subscribers.signup_process(signup_id=pending.pk)
    assert result.subscriber.language == "de"
    sending.delivery_send(delivery_id=result.delivery.pk)
    assert mail.outbox[0].body.startswith("Guten Tag Jana,")


def test_signing_up_again_in_another_language_switches_the_reader(article) -> None:
    with translation.override("de"):
        subscribers.subscriber_signup(name="Jana", email="jana@example.com", article=article)
    with translation.override("en"):
        subscribers.subscriber_signup(name="Jana", email="jana@example.com", article=article)
    assert Subscriber.objects.get().language == "en"


def test_a_reader_without_a_language_gets_the_sites(make_subscriber, report) -> None:
    subscriber = make_subscriber()  # e.g. signed up before languages were stored
    assert subscriber.language == ""
    with override_settings(LANGUAGE_CODE="de"):
        assert selectors.subscriber_language(subscriber) == "de"
        delivery = deliveries.delivery_resend(subscriber=subscriber, publish=False)
        sending.delivery_send(delivery_id=delivery.pk)
    assert mail.outbox[0].subject == "Ihr kostenloser Rückenschmerz-Ratgeber ist da"


def test_the_cover_picture_follows_the_page_language(client, article, german_site) -> None:
    from backpain_report.page import offer
    from backpain_report.report import covers

    covers.clear_memory()
    url = offer.cover_path(article.report)
    english = client.get(url, HTTP_ACCEPT_LANGUAGE="en")
    german = client.get(url, HTTP_ACCEPT_LANGUAGE="de")
    assert english["ETag"] != german["ETag"]
    assert "Accept-Language" in german["Vary"]


def test_site_texts_may_be_lazy_translations(client, article, german_site) -> None:
    """CONSENT_TEXT and OFFER_HEADING given as gettext_lazy() pass the checks and show in the
    reader's language."""
    from django.core.management import call_command
    from django.utils.translation import gettext_lazy

    texts = {
        "FROM_EMAIL": "r@example.com",
        "SITE_URL": "https://reports.example.com",
        "PRIVACY_URL": "/privacy/",
        "OFFER_HEADING": gettext_lazy("Get the free report"),
        "CONSENT_TEXT": gettext_lazy("Send me the free report"),
    }
    with override_settings(BACKPAIN_REPORT=texts):
        call_command("check", "--fail-level", "ERROR")
        page = client.get(article.get_absolute_url(), HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert '<h2 id="bpr-offer-title">Kostenlosen Ratgeber anfordern</h2>' in page


def test_the_language_is_in_the_admin_and_the_personal_data_export(
    admin_client, make_subscriber
) -> None:
    from backpain_report.selectors import subscriber_export

    subscriber = make_subscriber(language="de")
    assert subscriber_export(subscriber=subscriber)["language"] == "de"
    url = reverse("admin:backpain_report_subscriber_change", args=[subscriber.pk])
    page = admin_client.get(url).content.decode()
    assert "field-language" in page
