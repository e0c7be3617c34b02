"""Webhook endpoints: their signing secret and the URLs they may have.

A secret is ``whsec_`` and the base64 of 32 random bytes (the Standard Webhooks format, which
receivers' libraries parse). A URL must be ``https://``; ``http://`` only to a loopback host
while ``DEBUG`` is on (a development receiver). Where the URL leads is checked again on every
call, after DNS resolution (:mod:`backpain_report.delivery.webhooks`).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
LOOPBACK_NAMES = ("localhost",)


def secret_new() -> str:
    """A fresh signing secret in the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def endpoint_secret_rotate(endpoint: WebhookEndpoint) -> str:
    """Give ``endpoint`` a new secret (the old one stops working at once); return it."""
    endpoint.secret = secret_new()
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save(update_fields=["secret", "secret_rotated_at", "updated_at"])
    return endpoint.secret


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (``127.0.0.0/8``, ``::1``)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, *, debug: bool | None = None) -> str | None:
    """What is wrong with ``url`` as an endpoint's address (to follow "The URL "), or None;
    in the active language."""
    debug = settings.DEBUG if debug is None else debug
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return _("must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port == 0:  # (raises ValueError for a port out of range)
            return _("has no valid port.")
    except ValueError:
        return _("is not a valid URL.")
    if not (parts.path + parts.query).isascii():  # sent as is: http.client sends ASCII only
        return _("must percent-encode non-ASCII characters in its path and query.")
    if not host:
        return _("has no host.")
    if parts.username or parts.password:
        return _("must not carry a user name or password (the signature authenticates us).")
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and debug and is_loopback_host(host):
        return None
    if parts.scheme == "http":
        return _("must use https:// (http:// only to a loopback host while DEBUG is on).")
    return _("must use https://.")
