"""Issue 22, item 9: an honest thank-you. It names the address the report goes to (as typed,
escaped) and the sender's, says that a repeat request within the window is not mailed again,
and is the same for every sign-up: new, known, throttled by address, or a bot's. The address
never goes into a URL or a cached page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from backpain_report.rights import throttling

SIGNUP = reverse("backpain_report:signup")
DONE = reverse("backpain_report:signup_done")
TYPED = "Ann.O'Neil+a&b@Example.com"  # valid, and with characters HTML must escape
SHOWN = "Ann.O&#x27;Neil+a&amp;b@Example.com"


def _post(client, article, **extra) -> object:
    data = {"name": "Ann", "email": TYPED, "consent": "on", "article": article.slug, **extra}
    return client.post(SIGNUP, data)


def _done_text(client, response) -> str:
    assert response.status_code == 303
    assert "@" not in response["Location"] and "Ann" not in response["Location"]
    page = client.get(response["Location"])
    assert page.status_code == 200 and "no-cache" in page["Cache-Control"]
    main = page.content.decode()
    return main[main.index("<main") :]


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_done_page_names_both_addresses_escaped(client, article, no_broker):
    text = _done_text(client, _post(client, article))
    assert SHOWN in text and TYPED not in text
    assert "reports@example.com" in text  # the From of the report email (tests/settings.py)
    assert "add it to your contacts" in _normalised(text)
    assert "within 1 hour is not emailed again" in _normalised(text)
    assert "the earlier email holds the report" in _normalised(text)
    assert "on its way" not in text


def test_every_sign_up_gets_the_same_thank_you(client, article, no_broker, settings):
    answers = []
    for extra in ({}, {}, {"website": "http://spam.example"}):  # new, known, a bot's
        client.cookies.clear()
        answers.append(_done_text(client, _post(client, article, **extra)))
    assert answers[0] == answers[1] == answers[2]


def test_the_address_stays_out_of_urls_and_the_article_page(client, article, no_broker):
    response = _post(client, article)
    assert TYPED.lower() not in response["Location"].lower()
    page = client.get(article.get_absolute_url()).content.decode()
    assert "O&#x27;Neil" not in page and "Neil+a" not in page  # the cached page never has it
    cookie = response.cookies["bpr_signup_to"]
    assert cookie["httponly"] and cookie["path"] == DONE and int(cookie["max-age"]) <= 600
    assert cookie["samesite"] == "Lax"


def test_a_forged_cookie_shows_no_address(client, article):
    client.cookies["bpr_signup_to"] = "evil@example.com"
    text = _done_text_get(client)
    assert "evil@example.com" not in text and "the address you gave us" in text


def _done_text_get(client) -> str:
    page = client.get(DONE).content.decode()
    return page[page.index("<main") :]


def test_the_done_page_leads_back_to_the_article_and_the_site(client, article, no_broker):
    text = _done_text(client, _post(client, article))
    assert f'href="{article.get_absolute_url()}"' in text
    assert 'href="https://reports.example.com/"' in text  # SITE_URL (tests/settings.py)
    # Named as the PDF's closing page names it (site.site_name), never as a raw URL or host.
    assert "Visit Back Pain Reports" in _normalised(text)


def test_double_opt_in_speaks_of_the_confirmation_email(client, article, no_broker, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    text = _normalised(_done_text(client, _post(client, article)))
    assert "confirm" in text and SHOWN in text
    assert "the earlier email holds the confirmation link" in text


def test_the_scripts_thank_you_has_a_place_for_the_address(client, article):
    page = client.get(article.get_absolute_url()).content.decode()
    for template in re.findall(r"<template data-bpr-success>(.*?)</template>", page, re.S):
        assert "data-bpr-address" in template and "reports@example.com" in template
        assert "not emailed again" in _normalised(template)


def test_the_window_in_words_follows_the_setting(settings):
    from django.utils import translation

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 2 * 86400}
    with translation.override("en"):
        assert throttling.address_window_text().replace("\xa0", " ") == "2 days"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": 0}
    assert throttling.address_window_text() == ""


@pytest.mark.parametrize("language", ["de"])
def test_the_thank_you_is_translated(client, article, no_broker, language, settings):
    from django.utils import translation

    from tests.test_i18n import LOCALE_MIDDLEWARE

    settings.MIDDLEWARE = LOCALE_MIDDLEWARE
    response = client.post(
        SIGNUP,
        {"name": "Ann", "email": TYPED, "consent": "on", "article": article.slug},
        HTTP_ACCEPT_LANGUAGE=language,
    )
    page = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE=language).content.decode()
    translation.deactivate()  # LocaleMiddleware left the language active in this thread
    assert "Kontakte" in page and "1\xa0Stunde" in page and SHOWN in page
