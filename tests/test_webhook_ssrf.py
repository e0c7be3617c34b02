"""The webhook SSRF guard: which addresses a call may reach, however they are spelled or
resolved, and that the connection goes to the address that was checked."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from backpain_report.delivery import webhook_http
from backpain_report.delivery.webhook_http import (
    AddressRefused,
    address_allowed,
    addresses_resolve,
    networks_parse,
    post,
)
from backpain_report.webhooks.endpoints import url_problem
from tests.webhook_loopback import Loopback

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.255",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "192.0.0.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "::7f00:1",  # IPv4-compatible (deprecated) ::127.0.0.1, "global" to ipaddress
    "::a9fe:a9fe",  # ::169.254.169.254
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT) 127.0.0.1
    "5f00::1",  # reserved (SRv6 SIDs)
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1", "2a00:1450:4001::1", "64:ff9b::5db8:d822"]
LOOPBACK = networks_parse(["127.0.0.0/8"])


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address):
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert address_allowed(ipaddress.ip_address(address))


def test_an_allowed_network_lets_its_addresses_through_only():
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), LOOPBACK)
    assert not address_allowed(ipaddress.ip_address("::1"), LOOPBACK)


class Network:
    """Stand-ins for DNS and the connect: what was resolved and where a connection went."""

    def __init__(self, monkeypatch, *answers: list[str]) -> None:
        self.answers, self.asked, self.connected = list(answers), [], []
        monkeypatch.setattr(webhook_http.socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(
            webhook_http,
            "socket_open",
            lambda ip, port, _t: self.create_connection((str(ip), port)),
        )

    def getaddrinfo(self, host, port, *args, **kwargs):
        self.asked.append(host)
        found = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port, 0, 0) if ":" in ip else (ip, port),
            )
            for ip in found
        ]

    def create_connection(self, address, *args, **kwargs):
        self.connected.append(address)
        raise ConnectionRefusedError("test: no network")


def _post(url: str, allowed=()):
    return post(url, b"{}", {}, connect_timeout=1, read_timeout=1, max_bytes=100, allowed=allowed)


@pytest.mark.parametrize("answer", [[a] for a in REFUSED] + [["fe80::1%eth0"]])
def test_a_host_resolving_to_a_private_address_is_refused_before_any_connection(
    monkeypatch, answer
):
    network = Network(monkeypatch, answer)
    with pytest.raises(AddressRefused):
        _post("https://crm.example.com/hook")
    assert network.connected == []


def test_dns_rebinding_connects_to_the_address_that_was_checked(monkeypatch):
    network = Network(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    with pytest.raises(ConnectionRefusedError):
        _post("https://crm.example.com/hook")
    assert network.asked == ["crm.example.com"]  # resolved once
    assert network.connected == [("93.184.216.34", 443)]


def test_public_and_private_answers_connect_to_the_public_one(monkeypatch):
    network = Network(monkeypatch, ["10.0.0.1", "::1", "93.184.216.34", "2606:4700::1"])
    assert addresses_resolve("crm.example.com", 443, ()) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:4700::1"),
    ]
    with pytest.raises(ConnectionRefusedError):
        _post("https://crm.example.com:8443/hook")
    assert network.connected == [("93.184.216.34", 8443)]


def test_a_dns_failure_is_an_os_error(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(webhook_http.socket, "getaddrinfo", fail)
    with pytest.raises(OSError):
        _post("https://crm.example.com/hook")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",  # decimal
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",  # hex
        "http://0x7f000001/",
        "http://127.1/",
        "http://localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://0/",
        "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth localhost
        "http://127\u30020\u30020\u30021/",  # ideographic full stops
        "https://127.0.0.1/",
    ],
)
def test_other_spellings_of_loopback_are_refused_without_the_setting(url, monkeypatch):
    connected: list = []
    monkeypatch.setattr(webhook_http, "socket_open", lambda *a: connected.append(a))
    with pytest.raises(AddressRefused):
        _post(url)
    assert connected == []


def test_a_host_name_that_is_no_idna_is_refused():
    with pytest.raises(AddressRefused):
        _post("https://" + "a" * 64 + ".example.com/")


def test_the_loopback_receiver_is_reached_only_with_the_setting():
    with Loopback() as receiver:
        with pytest.raises(AddressRefused):
            _post(receiver.url)
        assert receiver.requests == []
        answer = _post(receiver.url, allowed=LOOPBACK)
        assert answer.status == 200 and answer.body == b"ok"
        [request] = receiver.requests
        assert request.body == b"{}"


@pytest.mark.parametrize(
    "url, debug, ok",
    [
        ("https://crm.example.com/hook", False, True),
        ("https://crm.example.com:8443/hook?a=1", False, True),
        ("http://crm.example.com/hook", True, False),
        ("http://127.0.0.1:8000/hook", True, True),
        ("http://localhost:8000/hook", True, True),
        ("http://[::1]:8000/hook", True, True),
        ("http://127.0.0.1:8000/hook", False, False),
        ("http://10.0.0.1/hook", True, False),
        ("https://user:pass@crm.example.com/hook", False, False),
        ("https://user@crm.example.com/hook", False, False),
        ("https://crm.example.com:99999/hook", False, False),
        ("https://crm.example.com:abc/hook", False, False),
        ("https://crm.example.com:0/hook", False, False),
        ("ftp://crm.example.com/hook", True, False),
        ("file:///etc/passwd", True, False),
        ("javascript:alert(1)", True, False),
        ("https:///hook", False, False),
        ("https://[::1/hook", False, False),
    ],
)
def test_url_problem(url, debug, ok):
    assert (url_problem(url, debug=debug) is None) is ok


@pytest.mark.django_db
def test_a_refused_address_fails_the_event_at_once(settings, monkeypatch):
    from backpain_report.delivery.sending import Outcome
    from backpain_report.delivery.webhooks import webhook_send
    from backpain_report.models import WebhookEndpoint, WebhookEvent
    from backpain_report.webhooks.endpoints import secret_new
    from backpain_report.webhooks.outbox import test_event_record as record_test_event

    network = Network(monkeypatch, ["169.254.169.254"])
    endpoint = WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", secret=secret_new(), event_types="test"
    )
    event_id = record_test_event(endpoint)
    assert webhook_send(event_id=event_id).outcome is Outcome.FAILED
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("failed", 1)
    assert "169.254.169.254" in event.last_error and network.connected == []
