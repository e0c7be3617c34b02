"""Which browser requests may post the sign-up: Fetch Metadata and ``Origin``, no token.

The article page is the same bytes for every reader (see :mod:`pagecache`), so its form carries
no CSRF token. What CSRF protection must stop for an anonymous sign-up form is a third-party
page making its visitors' browsers post forged sign-ups, spread over many IPs and so past the
per-IP throttle. Every browser since 2023 marks such a request: ``Sec-Fetch-Site:
cross-site`` (or ``same-site``), and ``Origin`` names the other site. A request with neither
header is no browser's: it is handled like any other (throttles, honeypot, validation), since a
direct attacker can post without a browser anyway. This is the rule of Go's
``http.CrossOriginProtection``.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.utils.http import is_same_domain

from ..conf import app_settings
from ..config.validators import origin_problem

#: ``Sec-Fetch-Site`` values of a request the site itself (or the reader, typing) started.
SAME_ORIGIN = frozenset({"same-origin", "none"})


def own_origin(request: HttpRequest) -> str:
    """The origin the site is served on for this request (``""`` for a host not allowed)."""
    try:
        return f"{request.scheme}://{request.get_host()}".lower()
    except DisallowedHost:
        return ""


def embed_origins() -> frozenset[str]:
    """The other sites allowed to post the form (``EMBED_ORIGINS``; misshapen ones ignored)."""
    listed = app_settings.EMBED_ORIGINS or ()
    if not isinstance(listed, (list, tuple)):
        return frozenset()
    return _valid_origins(tuple(o for o in listed if isinstance(o, str)))


@functools.lru_cache(maxsize=8)
def _valid_origins(listed: tuple[str, ...]) -> frozenset[str]:
    """``listed`` less what is no origin: parsed once per value of the setting, not per request
    (a sign-up asks up to three times)."""
    return frozenset(o for o in listed if origin_problem(o) is None)


def _csrf_trusted(origin: str) -> bool:
    """Whether ``origin`` is one of ``CSRF_TRUSTED_ORIGINS``, as Django's CSRF check reads them
    (``https://*.example.com`` trusts every subdomain)."""
    trusted = [o.lower() for o in getattr(settings, "CSRF_TRUSTED_ORIGINS", ())]
    if origin in trusted:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    for entry in (urlsplit(o) for o in trusted if "*" in o):
        if entry.scheme == parts.scheme and is_same_domain(parts.netloc, entry.netloc.lstrip("*")):
            return True
    return False


def _trusted(origin: str, request: HttpRequest) -> bool:
    return bool(origin) and (
        origin == own_origin(request) or origin in embed_origins() or _csrf_trusted(origin)
    )


def signup_refusal(request: HttpRequest) -> str | None:
    """Why a browser's sign-up POST is refused (a cross-site or same-site request from a
    site not in ``EMBED_ORIGINS``), or None when it may go on."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    origin = request.headers.get("Origin", "").strip().lower()
    if site in SAME_ORIGIN:
        return None
    if site:  # cross-site, same-site (or an unknown value): only from a listed origin
        if origin and origin in embed_origins():
            return None
        return f"Sec-Fetch-Site {site[:20]}, Origin {origin[:100] or '(none)'}"
    if not origin:  # no browser: the throttles, the honeypot and the form decide
        return None
    return None if _trusted(origin, request) else f"Origin {origin[:100]}"


def embed_origin(request: HttpRequest) -> str:
    """The request's ``Origin`` when it is one of ``EMBED_ORIGINS`` (its answers carry CORS
    headers for it), else ``""``."""
    origin = request.headers.get("Origin", "").strip().lower()
    return origin if origin in embed_origins() else ""


def same_origin_only(request: HttpRequest) -> bool:
    """Whether a request comes from the site's own pages: ``Sec-Fetch-Site: same-origin``, or
    without Fetch Metadata an ``Origin`` (else a ``Referer``) of the site's own origin."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site:
        return site == "same-origin"
    origin = request.headers.get("Origin", "").strip().lower()
    if origin:
        return origin == own_origin(request)
    try:
        referer = urlsplit(request.headers.get("Referer", "")[:2048])
    except ValueError:  # e.g. "http://[::1": an invalid IPv6 literal
        return False
    return bool(referer.netloc) and (
        f"{referer.scheme}://{referer.netloc}".lower() == own_origin(request)
    )
