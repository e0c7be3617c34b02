"""What makes a setting's value unusable: pure functions that import nothing of the app.

Each ``*_problem`` function returns the rest of the sentence "BACKPAIN_REPORT['KEY'] …", or None.
The schema calls them for the system checks; the modules that also need them at run time (the
site's links, the throttles, the cross-origin rules, the Message-ID) import them from here, so
the settings sit below everything and nothing imports upwards to validate a value.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.utils.encoding import punycode
from django.utils.functional import Promise

SCHEMES = ("http", "https")
#: Characters never allowed in a URL the app writes into a page, an email or a PDF.
UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")
#: The longest host name DNS allows.
MAX_HOST_LENGTH = 253
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")

#: Column sizes a setting's value must fit (the models use the same numbers).
MESSAGE_ID_MAX_LENGTH = 255
CONSENT_VERSION_MAX_LENGTH = 20
#: Added to CONSENT_VERSION when the consent text named the follow-up emails; the column holds
#: both.
FOLLOWUPS_CONSENT_SUFFIX = "+followups"
CONSENT_VERSION_COLUMN_LENGTH = CONSENT_VERSION_MAX_LENGTH + len(FOLLOWUPS_CONSENT_SUFFIX)
#: Every email's Message-ID: the delivery's pk, a 16-hex-digit keyed hash, the sender's domain.
MESSAGE_ID_FORMAT = "<{pk}.{digest}@{domain}>"
_LARGEST_PK = 2**63 - 1
CTA_TEXT_MAX = 200


def host_clean(value: object) -> str:
    """A host name fit to store (lower case, IDNA/ASCII letters, digits, dots and hyphens,
    at most :data:`MAX_HOST_LENGTH`), else ``""``."""
    if not isinstance(value, str):
        return ""
    host = value.strip().lower().rstrip(".")
    if len(host) > MAX_HOST_LENGTH or not _HOST.match(host):
        return ""
    return host


def netloc_ascii(netloc: str) -> str:
    """``netloc`` (``host[:port]``) with its host IDNA-encoded; raises UnicodeError if the host
    cannot be (an empty label, one over 63 characters)."""
    if netloc.isascii():
        return netloc
    userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.partition(":")  # not an IPv6 literal: those are ASCII
    return f"{userinfo}{at}{punycode(host)}{colon}{port}"


def site_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as ``SITE_URL`` (an origin: ``https://host[:port]``), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return 'must be an absolute http(s) URL with a host, e.g. "https://www.example.com"'
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return (
            "must be the site's origin alone (scheme, host and optionally a port), without a "
            "path, query, fragment or user name"
        )
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        try:
            punycode(parts.hostname)
        except UnicodeError:
            return "has a host that is not a host name (an empty label or one over 63 characters)"
    return None


def report_cta_problem(value: object) -> str | None:
    """What makes ``value`` unusable as ``REPORT_CTA``, or None (None itself is fine)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"text", "url"}:
        return 'must be None or a dict with exactly the keys "text" and "url"'
    text, url = value["text"], value["url"]
    if isinstance(text, Promise):  # gettext_lazy("..."): shown in the reader's language
        text = str(text)
    if not isinstance(text, str) or not text.strip() or len(text) > CTA_TEXT_MAX:
        return f'needs a "text" of 1 to {CTA_TEXT_MAX} characters'
    if not isinstance(url, str):
        return 'needs a "url" that is a string'
    try:
        parts = urlsplit(url)
    except ValueError:
        return 'needs a "url" that is a URL'
    if parts.scheme not in SCHEMES or not parts.hostname or UNSAFE_IN_URL.search(url):
        return 'needs an absolute http(s) "url", e.g. "https://www.example.com/book/"'
    try:
        netloc_ascii(parts.netloc)
    except UnicodeError:
        return 'needs a "url" whose host is a host name'
    return None


def privacy_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as ``PRIVACY_URL`` (an http(s) URL or a path on the site),
    or None."""
    if UNSAFE_IN_URL.search(url) or url.startswith("//"):
        return "must be an http(s) URL or a path on the site starting with /"
    if url.startswith("/"):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
        return "must be an http(s) URL or a path on the site starting with /"
    return None


def is_count(value: object) -> bool:
    """Whether ``value`` is a positive int (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def limit_parse(value: object) -> tuple[int, int] | None:
    """A ``(count, seconds)`` setting as two positive ints, or None if it is not one."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_count, value)):
        return value[0], value[1]
    return None


def origin_problem(value: object) -> str | None:
    """What is wrong with ``value`` as an origin (``https://host[:port]``), or None."""
    if not isinstance(value, str):
        return "is not a string"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is no number)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) origin"
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return "has more than a scheme, host and port"
    if value != value.lower().rstrip("/"):
        return "is not written as browsers send it (lower case, no trailing slash)"
    host = parts.hostname
    if not (host_clean(host) or ":" in host):  # a name (ASCII, IDNA-encoded), or an IPv6 literal
        return "has a host browsers do not send (IDNA-encode it: xn--...; no wildcard)"
    default = {"http": 80, "https": 443}[parts.scheme]
    netloc = f"[{host}]" if ":" in host else host
    port = parts.port
    canonical = f"{parts.scheme}://{netloc}" + (f":{port}" if port not in (None, default) else "")
    if value != canonical:
        return f"is not written as browsers send it ({canonical})"
    return None


def message_id_domain(from_email: str) -> str:
    """The domain of ``from_email`` as a Message-ID writes it (IDNA-encoded); "" when it has
    none. Raises UnicodeError for a domain that cannot be encoded."""
    domain = parseaddr(from_email)[1].rpartition("@")[2]
    return punycode(domain) if domain else ""


def from_email_problem(value: object) -> str | None:
    """FROM_EMAIL: an address whose domain makes a Message-ID that fits its column (every
    email's Message-ID is built from that domain and stored on its delivery)."""
    if not isinstance(value, str) or "@" not in parseaddr(value)[1]:
        return "must be set to the sender of the report emails"
    try:
        domain = message_id_domain(value)
    except UnicodeError:
        return (
            "has a domain that is not a valid host name (it cannot be IDNA-encoded), so no "
            "email could be sent"
        )
    length = len(MESSAGE_ID_FORMAT.format(pk=_LARGEST_PK, digest="0" * 16, domain=domain))
    if length > MESSAGE_ID_MAX_LENGTH:
        return (
            f"has a domain too long for the Message-ID built from it: up to {length} "
            f"characters, stored in a column of {MESSAGE_ID_MAX_LENGTH}"
        )
    return None


def consent_version_problem(value: str | int) -> str | None:
    """CONSENT_VERSION: fits the column it is stored in with every sign-up (a database with real
    varchar limits, PostgreSQL, would refuse every sign-up with a 500)."""
    length = len(str(value))
    if length <= CONSENT_VERSION_MAX_LENGTH:
        return None
    return (
        f"is {length} characters long; it is stored with every sign-up in a column of "
        f"{CONSENT_VERSION_MAX_LENGTH}"
    )
