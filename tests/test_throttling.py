"""Throttles per client IP and per target address; the honeypot; no enumeration."""

import pytest
from django.core import mail
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from backpain_report.models import Delivery, Subscriber
from backpain_report.rights import throttling

SIGNUP = {"name": "Ann", "email": "ann@example.com", "consent": "on"}


@pytest.fixture
def tight(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_IP": (3, 600)}


def post(client, remote_addr="127.0.0.1", **fields):
    return client.post(
        reverse("backpain_report:signup"), {**SIGNUP, **fields}, REMOTE_ADDR=remote_addr
    )


def test_ip_throttle_gives_a_calm_429_and_sends_nothing(client, article, tight, no_broker):
    for n in range(3):
        assert post(client, email=f"r{n}@example.com").status_code == 303
    response = post(client, email="r4@example.com")
    assert response.status_code == 429
    assert "Please try again a little later" in response.content.decode()
    assert not Subscriber.objects.filter(email_canonical="r4@example.com").exists()
    # Another client is not affected.
    assert post(client, email="r5@example.com", remote_addr="198.51.100.7").status_code == 303


def test_ip_throttle_answers_json_to_api_callers(client, article, tight, no_broker):
    for n in range(3):
        post(client, email=f"r{n}@example.com")
    response = client.post(
        reverse("backpain_report:signup"), SIGNUP, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 429 and response.json() == {"status": "throttled"}


def test_address_throttle_sends_at_most_one_email_per_window(
    client, article, no_broker, django_capture_on_commit_callbacks, settings
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    with django_capture_on_commit_callbacks(execute=True):
        responses = [post(client, remote_addr=f"203.0.113.{n}") for n in range(5)]
    assert {r.status_code for r in responses} == {303}
    assert Delivery.objects.count() == 1 and len(no_broker) == 1


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(settings):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.2"
    )
    assert throttling.client_ip(request) == "10.0.0.1"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "TRUSTED_PROXIES": 1}
    assert throttling.client_ip(request) == "198.51.100.2"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "TRUSTED_PROXIES": 5}
    assert throttling.client_ip(request) == "10.0.0.1"  # fewer hops than claimed


def test_cache_outage_fails_open_never_500(client, article, settings, no_broker):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "broken": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        },
    }
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_CACHE": "broken"}
    assert post(client).status_code == 303
    assert Subscriber.objects.count() == 1


def test_honeypot_creates_nothing(client, article, no_broker):
    response = post(client, website="https://spam.example")
    assert response.status_code == 303 and not Subscriber.objects.exists() and not no_broker


def test_no_enumeration_same_answer_for_every_kind_of_address(
    client, article, make_subscriber, no_broker
):
    make_subscriber(email="known@example.com")
    make_subscriber(email="confirmed@example.com", confirmed_at=timezone.now())
    make_subscriber(email="gone@example.com", unsubscribed_at=timezone.now())
    answers = set()
    for n, email in enumerate(
        ["new@example.com", "known@example.com", "confirmed@example.com", "gone@example.com"]
    ):
        response = post(client, email=email, remote_addr=f"192.0.2.{n}")
        page = client.get(response["Location"])
        # Issue 22: the page names the address as typed (the reader's own words, which tell
        # nothing); with it put aside, every byte of the answer is the same.
        content = page.content.replace(email.encode(), b"<the address typed>")
        assert content != page.content
        answers.add((response.status_code, response["Location"], content))
    assert len(answers) == 1
    assert not mail.outbox


@pytest.mark.parametrize(
    ("ip", "bucket"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped: counts as the IPv4 address
        ("[2001:db8:1:2::9]:443", "2001:db8:1:2::/64"),
        ("198.51.100.7:8080", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not an address", "not an address"),
    ],
)
def test_ip_buckets(ip, bucket):
    assert throttling.ip_bucket(ip) == bucket


def test_ipv6_clients_are_counted_per_slash_64(client, article, tight, no_broker):
    """One host can hold a whole /64: rotating the low 64 bits must not escape the limit."""
    for n in range(3):
        assert (
            post(client, email=f"r{n}@example.com", remote_addr=f"2001:db8:7::{n + 1}").status_code
            == 303
        )
    assert (
        post(client, email="r4@example.com", remote_addr="2001:db8:7:0:ffff::4").status_code == 429
    )
    assert post(client, email="r5@example.com", remote_addr="2001:db8:7:1::1").status_code == 303


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address(client, article, tight, no_broker):
    for n in range(3):
        post(client, email=f"r{n}@example.com", remote_addr="198.51.100.7")
    assert (
        post(client, email="r4@example.com", remote_addr="::ffff:198.51.100.7").status_code == 429
    )


@pytest.mark.parametrize(
    "forwarded",
    ["", "garbage", "1.2.3.4, <script>", ", ,", "999.1.1.1", "[nope]:80", "\x00\xff", "a" * 10_000],
)
def test_garbage_in_x_forwarded_for_never_raises(client, article, settings, no_broker, forwarded):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "TRUSTED_PROXIES": 1}
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert throttling.client_ip(request) == "10.0.0.1"  # not an address: the proxy's own
    assert throttling.ip_allowed(throttling.client_ip(request))
    response = client.post(
        reverse("backpain_report:signup"), SIGNUP, REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=forwarded,
    )  # fmt: skip
    assert response.status_code == 303


def test_forwarded_for_with_ports_and_ipv6(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "TRUSTED_PROXIES": 1}
    factory = RequestFactory()
    for forwarded, ip in [
        ("198.51.100.2:5555", "198.51.100.2"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("2001:DB8::5", "2001:db8::5"),
    ]:
        request = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
        assert throttling.client_ip(request) == ip


def test_sign_ups_without_a_client_ip_are_still_throttled(client, article, tight, no_broker):
    answers = [
        post(client, remote_addr="", email=f"r{n}@example.com").status_code for n in range(5)
    ]
    assert 429 in answers


def test_requests_without_a_client_ip_share_one_count_and_a_warning_says_so_once(
    settings, monkeypatch, caplog
):
    """Regression (review of issue 10, #12): without REMOTE_ADDR both IP throttles let
    everything through. Such requests cannot be told apart, so they count together, and the
    log says once per process that TRUSTED_PROXIES is probably needed."""
    monkeypatch.setattr(throttling, "_warned_no_client_ip", False)
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "THROTTLE_IP": (2, 600),
        "THROTTLE_DOWNLOAD": (3, 600),
    }
    assert [throttling.ip_allowed(None) for _ in range(3)] == [True, True, False]
    assert [throttling.download_ip_allowed(None) for _ in range(4)] == [True] * 3 + [False]
    assert throttling.ip_allowed("198.51.100.7")  # a client with an IP counts on its own
    request = RequestFactory().get("/", REMOTE_ADDR="")
    assert throttling.client_ip(request) is None
    [warning] = [r for r in caplog.records if r.name == "backpain_report.rights.throttling"]
    assert warning.levelname == "WARNING"
    assert "REMOTE_ADDR" in warning.getMessage() and "TRUSTED_PROXIES" in warning.getMessage()


@pytest.mark.parametrize("value", [(10,), (10, 3600, 1), ("ten", 3600), [], None, (0, 60)])
def test_a_misshapen_throttle_limit_fails_open_with_a_logged_error(
    client, article, settings, no_broker, caplog, value
):
    """Regression (review of issue 10, #8): ``limit, window = ...`` raised outside the try, so a
    THROTTLE_IP or THROTTLE_DOWNLOAD of the wrong shape made every sign-up (or download) a 500.
    Like a cache outage, it now lets requests through and logs an error."""
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "THROTTLE_IP": value,
        "THROTTLE_DOWNLOAD": value,
    }
    assert post(client).status_code == 303
    assert throttling.download_ip_allowed("198.51.100.7")
    assert throttling.download_link_allowed(1)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert {r.getMessage().split("]")[0] for r in errors} == {
        "BACKPAIN_REPORT['THROTTLE_IP'",
        "BACKPAIN_REPORT['THROTTLE_DOWNLOAD'",
    }


def test_misshapen_proxies_and_address_window_never_raise(settings, caplog):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
    for proxies in ["1", -1, True, None]:
        settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "TRUSTED_PROXIES": proxies}
        assert throttling.client_ip(request) == "10.0.0.1"  # REMOTE_ADDR, the safe default
    for window in ["3600", None, 1.5]:
        settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_ADDRESS_WINDOW": window}
        assert throttling.address_allowed("ann@example.com")
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 7


def test_every_bounded_column_a_sign_up_writes_fits(client, article, settings, no_broker):
    """Regression (review of issue 10): what a request brings is bounded before it is stored:
    the user agent is cut to its column, the IP kept without its IPv6 zone (which can be any
    length), a REMOTE_ADDR that is no address stored as none."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "HASH_IP": False, "TRUSTED_PROXIES": 1}
    answers = [
        client.post(
            reverse("backpain_report:signup"),
            {**SIGNUP, "email": email, "name": "N" * 100},
            REMOTE_ADDR=remote_addr,
            HTTP_X_FORWARDED_FOR=forwarded,
            HTTP_USER_AGENT="Mozilla/5.0 " + "x" * 10_000,
        ).status_code
        for email, remote_addr, forwarded in [
            ("zone@example.com", "10.0.0.1", "fe80::1%" + "z" * 300),
            ("unix@example.com", "unix:/run/gunicorn.sock", ""),
        ]
    ]
    assert answers == [303, 303]
    zone = Subscriber.objects.get(email_canonical="zone@example.com")
    unix = Subscriber.objects.get(email_canonical="unix@example.com")
    assert (zone.consent_ip, unix.consent_ip) == ("fe80::1", "")
    for subscriber in (zone, unix):
        for field in Subscriber._meta.concrete_fields:
            value = getattr(subscriber, field.attname)
            if field.max_length and isinstance(value, str):
                assert len(value) <= field.max_length, field.name
