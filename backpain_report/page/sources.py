"""Where a reader came from: the page's ``utm_*`` parameters and the referring host.

The article page is the same bytes for every reader (see :mod:`pagecache`), so the browser
fills them in: the app's script puts the page's ``utm_*`` and the referrer's host into the
sign-up form's hidden fields; a sign-up posts them back and they are kept with the consent
record. Without JavaScript the ``utm_*`` come from the sign-up POST's own ``Referer`` (the
article's address with its query string), and the referring host is not known. Nothing is
written and no cookie is set when a page is only viewed: a visitor who does not sign up
leaves no trace here (a page view is a counter, see :mod:`stats`).

Every value is cleaned, never refused (a reader cannot correct a hidden field): control and
markup characters go, the length is capped, and a referrer is reduced to its host name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, QueryDict

from ..config.validators import MAX_HOST_LENGTH, host_clean  # noqa: F401  (API too)

#: The ``utm_*`` parameters kept, in the order they are shown.
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign")
#: Every source field: the form's hidden fields and the model fields share these names.
SOURCE_FIELDS = (*UTM_FIELDS, "referrer_host")
#: The longest ``utm_*`` value kept (longer ones are cut).
MAX_UTM_LENGTH = 100

# Letters (any script), digits and a few separators campaign tools use; everything else
# (control characters, quotes, angle brackets, formula starters) is dropped.
_UTM_DROP = re.compile(r"[^\w .,:/+~@()-]")

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


def _own_host(request: HttpRequest) -> str:
    try:
        return request.get_host()
    except DisallowedHost:
        return ""


def utm_from_url(url: str) -> Source:
    """The ``utm_*`` parameters of a URL's query string, cleaned (``""`` for each missing)."""
    if not url or len(url) > 4096:
        return dict.fromkeys(UTM_FIELDS, "")
    try:
        query = parse_qs(urlsplit(url.strip()).query)
    except ValueError:
        query = {}
    return {name: utm_clean((query.get(name) or [""])[0]) for name in UTM_FIELDS}


def source_reported(request: HttpRequest, data: Mapping[str, object]) -> Source:
    """The source a browser reports with a sign-up or a page view: the fields the app's script
    filled in from the page (in ``data``, cleaned), and, when they carry no ``utm_*`` (no
    JavaScript), those of the page the request came from, read from its ``Referer`` (the
    article's URL with its query string, under the browsers' default referrer policy). A
    referring host that is the site's own is no source."""
    source = source_clean(data)
    if not any(source.get(name) for name in UTM_FIELDS):
        source.update(utm_from_url(request.headers.get("Referer", "")))
    own = host_clean(_own_host(request).split(":")[0])
    if source.get("referrer_host") and source["referrer_host"] == own:
        source["referrer_host"] = ""
    return source


def data_with_source(request: HttpRequest, data: QueryDict) -> dict[str, object]:
    """A copy of a sign-up POST's ``data`` whose source fields hold :func:`source_reported`.

    Without JavaScript the ``utm_*`` are only in the POST's ``Referer`` (the article's address).
    A form shown again with errors is at the sign-up's own address, which has none, so the next
    POST's ``Referer`` has none either: the form's hidden fields must carry them from here."""
    # A plain dict of the last value of each field (what the form reads), not ``data.copy()``:
    # a QueryDict copy is a deep copy, a tenth of a millisecond per sign-up.
    return {**data.dict(), **source_reported(request, data)}


def source_label(source: Mapping[str, str]) -> str:
    """How the funnel and the export name a source: ``"newsletter / email / spring"`` for
    ``utm_*``, else the referring host, else ``"(direct)"``."""
    utm = [source.get(name, "") for name in UTM_FIELDS]
    if utm[0]:
        return " / ".join(part for part in utm if part)
    return source.get("referrer_host", "") or "(direct)"
