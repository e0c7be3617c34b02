"""Hostile input at the sign-up form: never a 500, never an extra recipient, never a stored
raw control character."""

import email
import re
from email import policy

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backpain_report.delivery.emails import build_report_email
from backpain_report.models import Delivery, Subscriber
from backpain_report.rights.addresses import canonical_email

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
URL = "/back-pain/signup/"
LOOK_ALIKE = "ann@ex\u0430mple.com"  # Cyrillic "a"

CORPUS = {
    "header injection in email": {"email": "ann@example.com\r\nBcc: victim@example.org"},
    "header injection in name": {"name": "Ann\r\nBcc: victim@example.org"},
    "encoded newline in name": {"name": "Ann%0d%0aBcc: victim@example.org"},
    "NUL in email": {"email": "ann\x00@example.com"},
    "NUL in name": {"name": "A\x00nn"},
    "1 MB name": {"name": "A" * 1_000_000},
    "1 MB email": {"email": "a" * 1_000_000 + "@example.com"},
    "RTL override in name": {"name": "Ann \u202egnp.exe"},
    "script tag in name": {"name": "<script>alert(1)</script>"},
    "img tag in name": {"name": '<img src="http://127.0.0.1:9/x">'},
    "look-alike domain": {"email": LOOK_ALIKE},
    "two addresses": {"email": "ann@example.com, eve@example.org"},
    "quoted local part": {"email": '"ann@x"@example.com'},
    "missing consent": {"consent": ""},
    "consent as list": {"consent": ["on", "on"]},
    "unknown article": {"article": "../../etc/passwd"},
    "empty everything": {"name": "", "email": "", "consent": ""},
}


@pytest.fixture(autouse=True)
def _loose_ip_throttle(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_IP": (10**6, 60)}


def assert_safe_rows():
    for subscriber in Subscriber.objects.all():
        for value in (subscriber.name, subscriber.email, subscriber.email_canonical):
            assert not CONTROL.search(value), value
            assert "\n" not in value and "\r" not in value
        assert len(subscriber.email) <= 320 and len(subscriber.name) <= 100
    for delivery in Delivery.objects.select_related("subscriber", "report"):
        message = build_report_email(delivery=delivery, pdf=None, message_id="<x@example.com>")
        assert message.recipients() == [delivery.subscriber.email]
        parsed = email.message_from_bytes(message.message().as_bytes(), policy=policy.default)
        assert parsed["Bcc"] is None and parsed["Cc"] is None
        recipients = [canonical_email(a.addr_spec) for a in parsed["To"].addresses]
        assert recipients == [delivery.subscriber.email_canonical]  # IDN goes out as punycode


@pytest.mark.parametrize("case", list(CORPUS), ids=list(CORPUS))
def test_hostile_corpus(client, article, no_broker, case):
    data = {"name": "Ann", "email": "ann@example.com", "consent": "on", **CORPUS[case]}
    response = client.post(URL, data)
    assert response.status_code in {200, 303, 400}, response.status_code
    assert_safe_rows()


def test_invalid_utf8_body(client, article, no_broker):
    body = b"name=%FF%FEAnn&email=ann%40example.com&consent=on"
    response = client.post(URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in {200, 303, 400}
    assert_safe_rows()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.testserver"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
def test_a_browsers_signup_from_another_site_is_403(article, headers):
    response = Client(enforce_csrf_checks=True).post(
        URL, {"name": "Ann", "email": "ann@example.com", "consent": "on"}, headers=headers
    )
    assert response.status_code == 403 and not Subscriber.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_wrong_methods_are_405(client, article, method):
    assert getattr(client, method)(URL).status_code == 405
    url = reverse("backpain_report:one_click_unsubscribe", args=["x"])
    assert client.get(url).status_code == 405


def test_look_alike_domain_is_stored_as_punycode(client, article, no_broker):
    client.post(URL, {"name": "Ann", "email": LOOK_ALIKE, "consent": "on"})
    assert Subscriber.objects.get().email_canonical == "ann@xn--exmple-4nf.com"


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.text(max_size=300),
    email=st.one_of(
        st.text(max_size=80),
        st.emails(),
        st.builds(
            lambda a, b: f"{a}@{b}.com",
            st.text(min_size=1, max_size=20),
            st.text(min_size=1, max_size=20),
        ),
    ),
    consent=st.sampled_from(["on", "", "1", "off", "\x00"]),
)
def test_generated_input_never_breaks_anything(client, article, no_broker, name, email, consent):
    response = client.post(URL, {"name": name, "email": email, "consent": consent})
    assert response.status_code in {200, 303, 400}, response.status_code
    assert_safe_rows()
