"""One webhook POST, guarded against server-side request forgery (SSRF).

The host is resolved once, every address it resolves to is checked, and the connection goes to
a checked address (TLS still verifies the certificate for the host name): a DNS answer that
changes between the check and the call (rebinding) cannot reach anything else. Refused are
addresses that are not globally reachable (private, loopback, link-local, shared, reserved
such as the IPv4-compatible ``::127.0.0.1``, unspecified such as ``0.0.0.0`` and ``::``,
multicast), also when written in another spelling (decimal, octal, hex, IPv4-mapped IPv6, 6to4,
NAT64: they are parsed or resolved to an address first), unless a network in
``WEBHOOK_ALLOWED_NETWORKS`` contains them. Redirects are never followed. Each call has a
connect timeout, a read timeout and an overall deadline, and reads at most
``WEBHOOK_MAX_RESPONSE_BYTES`` of the answer (a 2xx whose body stalls was still received).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The endpoint leads to an address the app may not call (final, never retried)."""


@dataclass(frozen=True)
class Answer:
    """The receiver's answer: status, the headers we use, the start of the body."""

    status: int
    retry_after: float | None
    location: str
    body: bytes


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_allowed(address: IPAddress, allowed: Iterable[Network] = ()) -> bool:
    """Whether a call may go to ``address``: globally reachable (and so is any IPv4 address it
    embeds), or inside one of the ``allowed`` networks."""
    allowed = list(allowed)
    if any(address in network for network in allowed if network.version == address.version):
        return True
    inner = _embedded_ipv4(address)
    if inner is not None and not address_allowed(inner, allowed):
        return False
    if address in NAT64:  # (in the reserved ::/8, yet the way out of an IPv6-only host)
        return True
    # ipaddress calls reserved ranges such as the IPv4-compatible ::/96 (::127.0.0.1) global.
    return address.is_global and not address.is_multicast and not address.is_reserved


def networks_parse(values: Iterable[str]) -> list[Network]:
    """``WEBHOOK_ALLOWED_NETWORKS`` as networks (a bad entry is the settings check's E018)."""
    return [ipaddress.ip_network(value, strict=False) for value in values]


def addresses_resolve(host: str, port: int, allowed: Iterable[Network]) -> list[IPAddress]:
    """The addresses ``host`` resolves to that a call may go to; :class:`AddressRefused` when
    there is none. A DNS failure raises :class:`OSError` (temporary)."""
    found: list[IPAddress] = []
    try:  # an address written as one (the resolver would take tens of a millisecond to say so)
        literal: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:  # a name, or another spelling of an address: the resolver reads it
        literal = []
    answers = [(0, 0, 0, "", (str(address), port)) for address in literal] or socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    for *_rest, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    usable = [address for address in found if address_allowed(address, allowed)]
    if not usable:
        shown = ", ".join(str(address) for address in found) or "nothing"
        raise AddressRefused(
            f"{host} resolves to {shown}: not a public address "
            "(WEBHOOK_ALLOWED_NETWORKS may allow it)."
        )
    return usable


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default TLS context (the system's CA certificates, certificate and host name
    verified), made once per process: loading the CA store takes tens of milliseconds, more
    than the rest of a call. An ``SSLContext`` is safe to share between connections."""
    return ssl.create_default_context()


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTP(S) connection to ``host`` that connects to the checked ``address`` only."""

    def __init__(
        self,
        host: str,
        port: int,
        address: IPAddress,
        *,
        tls: bool,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        context = _tls_context()
        super().__init__(host, port, timeout=read_timeout, context=context)
        self._tls_context = context
        self._address, self._tls, self._connect_timeout = address, tls, connect_timeout

    def connect(self) -> None:
        sock = socket_open(self._address, self.port, self._connect_timeout)
        sock.settimeout(self.timeout)
        self.sock = (
            self._tls_context.wrap_socket(sock, server_hostname=self.host) if self._tls else sock
        )


def socket_open(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``address``, checked already: no name is resolved here (so nothing
    can answer differently than it did for the check)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
    except BaseException:
        sock.close()
        raise
    return sock


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # ("²".isdigit() is true, float("²") fails)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _host_ascii(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AddressRefused(f"{host!r} is not a valid host name.") from exc


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
    max_bytes: int,
    allowed: Iterable[Network] = (),
) -> Answer:
    """POST ``body`` to ``url`` as described in the module docstring.

    Raises :class:`AddressRefused` (final), :class:`OSError` or
    :class:`http.client.HTTPException` (temporary: DNS, connection, timeout, a broken answer).
    """
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = _host_ascii(parts.hostname or "")
    address = addresses_resolve(host, port, list(allowed))[0]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = _PinnedConnection(
        host,
        port,
        address,
        tls=tls,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    # A receiver that trickles its answer byte by byte is cut off at the overall deadline.
    cut = threading.Event()
    deadline = threading.Timer(connect_timeout + read_timeout, _cut, args=(connection, cut))
    deadline.daemon = True
    deadline.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return Answer(
            status=response.status,
            retry_after=_retry_after(response.getheader("Retry-After")),
            location=(response.getheader("Location") or "")[:300],
            body=_body_start(response, max_bytes),
        )
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set():  # (not "the timer is done": it may still be shutting the socket)
            raise TimeoutError(
                f"no complete answer within {connect_timeout + read_timeout:g} s"
            ) from exc
        raise
    finally:
        deadline.cancel()
        connection.close()


def _body_start(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of the answer's body; what came before a timeout or a cut-off (the
    status is the answer: a 2xx whose body never ends was still received)."""
    content = b""
    with contextlib.suppress(OSError, http.client.HTTPException):
        while len(content) < max_bytes:
            chunk = response.read1(max_bytes - len(content))
            if not chunk:
                break
            content += chunk
    return content


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Shut the socket of a call past its deadline (its pending read then fails)."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
