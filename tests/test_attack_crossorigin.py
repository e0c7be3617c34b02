"""Attacks found by the review of issue 21: sign-up protection (docs, "Sign-up protection",
"Embedding the form").

- Check E017 accepts EMBED_ORIGINS no browser ever sends ("as browsers send them" is its
  promise): an explicit default port, a non-ASCII (not IDNA-encoded) host, a wildcard, a
  character no host has, an empty or zero-padded port. Such an origin is silently never
  matched: the partner's sign-ups are all refused with a 403.
- Without Fetch Metadata, an Origin "one of CSRF_TRUSTED_ORIGINS" is compared as a string, so a
  Django wildcard entry ("https://*.example.com") trusts nothing.
"""

from __future__ import annotations

import pytest
from django.test import Client

from backpain_report.models import PendingSignup, Subscriber
from backpain_report.page.crossorigin import origin_problem

pytestmark = pytest.mark.django_db

URL = "/back-pain/signup/"
SIGNUP = {"name": "Ann", "email": "ann@example.com", "consent": "on"}


@pytest.mark.parametrize(
    "value",
    [
        "https://www.example.org:443",  # browsers send https://www.example.org
        "http://www.example.org:80",
        "https://bücher.example",  # browsers send https://xn--bcher-kva.example
        "https://*.example.org",
        "https://exa mple.org",
        "https://www.example.org:",
        "https://www.example.org:08443",
    ],
)
def test_an_embed_origin_no_browser_sends_is_a_check_error(value):
    assert origin_problem(value) is not None


def test_a_wildcard_csrf_trusted_origin_is_honoured_for_an_older_browser(
    article, no_broker, settings
):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    response = Client().post(URL, SIGNUP, headers={"Origin": "https://shop.example.com"})
    assert response.status_code == 303
    assert Subscriber.objects.exists() or PendingSignup.objects.exists()
