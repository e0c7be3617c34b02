"""The sign-up without a token: Fetch Metadata and Origin decide which browsers may post it
(docs, "Sign-up protection" and "Embedding the form")."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings
from django.urls import reverse

from backpain_report.models import PendingSignup, Subscriber
from backpain_report.page.crossorigin import origin_problem

pytestmark = pytest.mark.django_db

URL = "/back-pain/signup/"
SIGNUP = {"name": "Ann", "email": "ann@example.com", "consent": "on"}
PARTNER = "https://partner.example.org"
EMBEDDING = {"BACKPAIN_REPORT": {"FROM_EMAIL": "r@example.com", "EMBED_ORIGINS": [PARTNER]}}


def _post(headers: dict[str, str], *, json: bool = False, data: dict | None = None):
    accept = {"Accept": "application/json"} if json else {}
    return Client(enforce_csrf_checks=True).post(URL, data or SIGNUP, headers={**headers, **accept})


def _stored() -> bool:
    return Subscriber.objects.exists() or PendingSignup.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://testserver"},  # an older browser: no Fetch Metadata
        {},  # no browser: the throttles, the honeypot and the form decide
    ],
)
def test_the_sites_own_pages_and_non_browsers_may_sign_up(article, no_broker, headers):
    response = _post(headers)
    assert response.status_code == 303 and _stored()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://blog.testserver"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},  # a lie about Origin
        {"Sec-Fetch-Site": "whatever"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: page
        {"Origin": "https://testserver.evil.example"},
    ],
)
def test_a_browsers_post_from_another_site_is_refused_and_nothing_is_stored(
    article, no_broker, headers
):
    page = _post(headers)
    assert page.status_code == 403
    assert "cannot be sent from here" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    answer = _post(headers, json=True)
    assert answer.status_code == 403 and answer.json() == {"status": "forbidden"}
    assert "Access-Control-Allow-Origin" not in answer
    assert not _stored() and not no_broker


def test_the_refusal_comes_before_the_throttle_and_the_form(article, settings):
    """A forged sign-up spends nothing of the reader's throttle and says nothing of the form."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_IP": (1, 60)}
    for _ in range(3):
        refused = _post({"Sec-Fetch-Site": "cross-site"}, json=True, data={"email": "bad"})
        assert refused.status_code == 403 and "errors" not in refused.json()
    own = _post({"Sec-Fetch-Site": "same-origin"}, json=True, data={"email": "bad"})
    assert own.status_code == 400


@override_settings(**EMBEDDING)
def test_a_listed_origin_may_post_and_read_the_json_answer(article, no_broker):
    answer = _post({"Sec-Fetch-Site": "cross-site", "Origin": PARTNER}, json=True)
    assert answer.status_code == 202
    assert answer["Access-Control-Allow-Origin"] == PARTNER
    assert "Origin" in answer["Vary"]
    invalid = _post(
        {"Sec-Fetch-Site": "cross-site", "Origin": PARTNER}, json=True, data={"email": "x"}
    )
    assert invalid.status_code == 400 and invalid["Access-Control-Allow-Origin"] == PARTNER
    other = _post({"Sec-Fetch-Site": "cross-site", "Origin": "https://other.example"}, json=True)
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other
    own = _post({"Sec-Fetch-Site": "same-origin"}, json=True)
    assert "Access-Control-Allow-Origin" not in own


@override_settings(**EMBEDDING)
def test_the_no_js_post_from_a_listed_origin_ends_on_our_page_with_a_link_back(
    client, article, no_broker
):
    response = _post({"Sec-Fetch-Site": "cross-site", "Origin": PARTNER})
    assert response.status_code == 303
    assert (
        response["Location"]
        == reverse("backpain_report:signup_done") + "?from=https%3A%2F%2Fpartner.example.org"
    )
    done = client.get(response["Location"]).content.decode()
    assert f'href="{PARTNER}"' in done and "Check your inbox" in done
    assert ">Back to partner.example.org</a>" in done  # the site as a reader knows it
    forged = client.get(reverse("backpain_report:signup_done") + "?from=https://evil.example")
    assert "evil.example" not in forged.content.decode()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://www.example.org", True),
        ("http://localhost:8080", True),
        ("https://www.example.org/", False),
        ("https://www.example.org/path", False),
        ("HTTPS://WWW.EXAMPLE.ORG", False),
        ("www.example.org", False),
        ("ftp://example.org", False),
        ("https://example.org:port", False),
        (42, False),
    ],
)
def test_embed_origins_are_origins_as_browsers_send_them(value, ok):
    assert (origin_problem(value) is None) is ok


def test_a_misshapen_embed_origin_is_a_check_error(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "EMBED_ORIGINS": ["https://x.org/"]}
    with pytest.raises(SystemCheckError, match="E017"):
        call_command("check")
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "EMBED_ORIGINS": "https://x.org"}
    with pytest.raises(SystemCheckError, match="E002"):
        call_command("check")


def test_confirm_and_unsubscribe_keep_djangos_csrf(make_subscriber):
    """The per-reader pages keep their token: a POST without it is Django's 403."""
    from backpain_report.delivery.tokens import make_unsubscribe_token

    reader = make_subscriber(email="ann@example.com")
    token = make_unsubscribe_token(reader.pk)
    url = reverse("backpain_report:unsubscribe", args=[token])
    page = Client(enforce_csrf_checks=True).get(url).content.decode()
    assert "csrfmiddlewaretoken" in page
    forged = Client(enforce_csrf_checks=True).post(url, headers={"Sec-Fetch-Site": "same-origin"})
    assert forged.status_code == 403
    reader.refresh_from_db()
    assert reader.unsubscribed_at is None


@override_settings(CSRF_TRUSTED_ORIGINS=["https://www.testserver.example"])
def test_an_older_browser_from_a_csrf_trusted_origin_may_sign_up(article, no_broker):
    """Behind a proxy that changes the scheme or host Django sees, the site's own pages send an
    Origin that CSRF_TRUSTED_ORIGINS lists: accepted as Django's CSRF accepts it."""
    assert _post({"Origin": "https://www.testserver.example"}).status_code == 303
    fetch_metadata = {"Sec-Fetch-Site": "cross-site", "Origin": "https://www.testserver.example"}
    assert _post(fetch_metadata).status_code == 403  # a browser that says cross-site: refused
