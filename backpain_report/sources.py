"""Where a reader came from: the page's ``utm_*`` parameters and the referring host.

The article page reads them from its own request (its query string and ``Referer``) and puts
them into the sign-up form's hidden fields, filled in per request like the CSRF token (the
form's HTML is otherwise cached, see :mod:`formcache`); a sign-up posts them back and they are
kept with the consent record. Nothing is written and no cookie is set when a page is only
viewed: a visitor who does not sign up leaves no trace here.

Every value is cleaned, never refused (a reader cannot correct a hidden field): control and
markup characters go, the length is capped, and a referrer is reduced to its host name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

#: The ``utm_*`` parameters kept, in the order they are shown.
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")
#: Every source field: the form's hidden fields and the model fields share these names.
SOURCE_FIELDS = (*UTM_FIELDS, "referrer_host")
#: The longest ``utm_*`` value kept (longer ones are cut).
MAX_UTM_LENGTH = 100
#: The longest host name DNS allows.
MAX_HOST_LENGTH = 253

# Letters (any script), digits and a few separators campaign tools use; everything else
# (control characters, quotes, angle brackets, formula starters) is dropped.
_UTM_DROP = re.compile(r"[^\w .,:/+~@()-]")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")

Source = dict[str, str]


def empty_source() -> Source:
    """A source with every field blank (a direct visit)."""
    return dict.fromkeys(SOURCE_FIELDS, "")


def utm_clean(value: object) -> str:
    """A ``utm_*`` value fit to store: text only, no markup or control characters, at most
    :data:`MAX_UTM_LENGTH` characters, spaces collapsed; anything else becomes ``""``."""
    if not isinstance(value, str):
        return ""
    text = " ".join(_UTM_DROP.sub("", value[: MAX_UTM_LENGTH * 4]).split())
    return text[:MAX_UTM_LENGTH].strip()


def host_clean(value: object) -> str:
    """A host name fit to store (lower case, IDNA/ASCII letters, digits, dots and hyphens,
    at most :data:`MAX_HOST_LENGTH`), else ``""``."""
    if not isinstance(value, str):
        return ""
    host = value.strip().lower().rstrip(".")
    if len(host) > MAX_HOST_LENGTH or not _HOST.match(host):
        return ""
    return host


def referrer_host(referer: str, *, own_host: str = "") -> str:
    """The host of a ``Referer`` header: no scheme, port, path or query (those may identify
    the reader); ``""`` for none, an unparsable one, or the site's own host."""
    if not referer or len(referer) > 2048:
        return ""
    try:
        parts = urlsplit(referer.strip())
        host = parts.hostname or ""
    except ValueError:  # e.g. "http://[::1" : an invalid IPv6 literal
        return ""
    if parts.scheme not in ("http", "https"):
        return ""
    host = host_clean(host)
    return "" if host and host == host_clean(own_host.split(":")[0]) else host


def source_clean(data: Mapping[str, object]) -> Source:
    """The source fields of ``data`` (a POST, a form's data or a model's values), cleaned."""
    source = {name: utm_clean(data.get(name)) for name in UTM_FIELDS}
    source["referrer_host"] = host_clean(data.get("referrer_host"))
    return source


def source_from_request(request: HttpRequest | None) -> Source:
    """The source of a page request: its ``utm_*`` query parameters and its referrer's host.

    Read only; nothing is stored."""
    if request is None:
        return empty_source()
    source = {name: utm_clean(request.GET.get(name, "")) for name in UTM_FIELDS}
    try:
        own_host = request.get_host()
    except DisallowedHost:  # the page itself answers that; no referrer is compared
        own_host = ""
    source["referrer_host"] = referrer_host(request.headers.get("Referer", ""), own_host=own_host)
    return source


def source_label(source: Mapping[str, str]) -> str:
    """How the funnel and the export name a source: ``"newsletter / email / spring"`` for
    ``utm_*``, else the referring host, else ``"(direct)"``."""
    utm = [source.get(name, "") for name in UTM_FIELDS]
    if utm[0]:
        return " / ".join(part for part in utm if part)
    return source.get("referrer_host", "") or "(direct)"
