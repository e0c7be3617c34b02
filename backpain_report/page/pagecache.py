"""The article page and the sign-up form, rendered once and served as the same bytes to all.

Nothing in the article page depends on the reader: the form carries no CSRF token (the sign-up
is protected by Fetch Metadata, see :mod:`crossorigin`), the source fields are filled in by the
browser, and views are counted by a beacon. So the page is rendered once per (host, scheme,
path, language, script prefix, URLconf, settings) and kept as bytes: in ``PAGE_CACHE``, shared
by every web process, and in a copy per process. A shared cache (a CDN, Varnish) may keep it
too: it is served ``public`` for ``PAGE_MAX_AGE`` seconds, never to be served stale
(``stale-while-revalidate=0``), with an ``ETag``, ``Last-Modified`` and ``Age``.

Editing an article or a report (any save or delete) starts a new *generation*: every stored
page is dropped. Each process reads the generation from ``PAGE_CACHE`` at most once per
:data:`GENERATION_RECHECK` seconds, so an edit reaches this site's own answers within that
time, and a shared cache within ``PAGE_MAX_AGE`` (a stored page is never older than that,
and ``Age`` tells a shared cache how old it already is).

A site's base template may make the page depend on the reader (the user's name, messages): the
render then reads the session, asks for a CSRF token, reads messages or sets a cookie. Such a
page is never stored, and is sent ``private, no-cache`` so that no shared cache stores it
either; it is rendered per request as before, and a warning says why once per process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import DisallowedHost
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port
from django.urls import get_script_prefix, get_urlconf
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date
from django.utils.translation import get_language

from .. import __version__
from ..conf import app_settings

logger = logging.getLogger(__name__)

FORM_TEMPLATE = "backpain_report/signup_form.html"
GENERATION_KEY = "backpain_report:page:generation"
#: Seconds a process trusts the generation it last read from ``PAGE_CACHE``.
GENERATION_RECHECK = 1.0
#: Pages a process keeps a copy of (hosts x paths x languages); the oldest used goes first.
LOCAL_PAGES = 256
#: Settings that change what the page looks like; a change drops every stored page.
DEPENDS_ON = frozenset(
    {
        "BACKPAIN_REPORT",
        "TEMPLATES",
        "CRISPY_TEMPLATE_PACK",
        "CRISPY_ALLOWED_TEMPLATE_PACKS",
        "CRISPY_FAIL_SILENTLY",
        "LANGUAGE_CODE",
        "LANGUAGES",
        "ROOT_URLCONF",
        "INSTALLED_APPS",
        "FORM_RENDERER",
        "STATIC_URL",
        "STORAGES",
        "MIDDLEWARE",
        "CACHES",
        "USE_I18N",
        "LOCALE_PATHS",
    }
)


@dataclass(frozen=True)
class StoredPage:
    """A rendered page as it is served: its bytes and what conditional requests compare."""

    content: bytes
    content_type: str
    etag: str
    last_modified: int | None
    rendered_at: float


#: Marks a page whose render depended on the reader: never stored, rendered per request.
PER_READER = object()

_lock = threading.Lock()
_local: OrderedDict[tuple[str, ...], tuple[object, float]] = OrderedDict()  # (page, stored at)
_generation: list = ["", 0.0]  # [value, read at]
_warned: set[str] = set()


def _cache() -> BaseCache | None:
    try:
        return caches[app_settings.PAGE_CACHE]
    except (InvalidCacheBackendError, TypeError):  # an unknown alias (check E015)
        return None


def max_age() -> int:
    """``PAGE_MAX_AGE``, or its default when misshapen (check E016)."""
    value = app_settings.PAGE_MAX_AGE
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 300


def generation() -> str:
    """The current generation of stored pages, read from ``PAGE_CACHE`` at most once per
    :data:`GENERATION_RECHECK` seconds (and made there when missing)."""
    now = time.monotonic()
    with _lock:
        value, read_at = _generation
        if value and now - read_at < GENERATION_RECHECK:
            return value
    cache = _cache()
    fresh = uuid.uuid4().hex[:12]
    try:
        if cache is None:
            raise LookupError("no page cache")
        current = cache.get(GENERATION_KEY)
        if not current:
            cache.add(GENERATION_KEY, fresh, timeout=None)
            current = cache.get(GENERATION_KEY) or fresh
    except Exception:
        # No shared generation: keep this process's own (edits made here still drop pages).
        logger.warning("Page cache unavailable; pages are kept per process", exc_info=True)
        current = value or fresh
    with _lock:
        if current != _generation[0]:
            _local.clear()
        _generation[:] = [str(current), now]
    return str(current)


def _shared_set(key: str, value: object, timeout: int | None, failing: str) -> None:
    """``PAGE_CACHE.set``; a sick cache is logged (``failing`` says what it costs), never raised."""
    cache = _cache()
    try:
        if cache is not None:
            cache.set(key, value, timeout=timeout)
    except Exception:
        logger.warning("Page cache unavailable; %s", failing, exc_info=True)


def pages_invalidate(**kwargs: object) -> None:
    """Drop every stored page, in every process (a new generation); a signal receiver."""
    fresh = uuid.uuid4().hex[:12]
    _shared_set(GENERATION_KEY, fresh, None, "other processes keep their pages")
    with _lock:
        _local.clear()
        _generation[:] = [fresh, time.monotonic()]


def pages_invalidate_on_commit(**kwargs: object) -> None:
    """Drop every stored page now and again once the current transaction commits (an article
    or a report was saved or deleted; its edition may still change before the commit, and a
    page rendered meanwhile from the old rows must not stay)."""
    pages_invalidate()
    transaction.on_commit(pages_invalidate, robust=True)


_config_since: list[int] = [0]


def config_since() -> int:
    """When this process last read the configuration the page depends on: no page's
    ``Last-Modified`` is older (an ``If-Modified-Since`` from before a settings change or a new
    version of the app is no 304)."""
    _fingerprint()
    return _config_since[0]


@functools.cache
def _fingerprint() -> str:
    """What of the configuration shapes the page, hashed (a deploy with new settings or a new
    version of the app does not serve pages stored before it)."""
    _config_since[0] = int(time.time())
    parts = [__version__] + [repr(getattr(settings, name, None)) for name in sorted(DEPENDS_ON)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _origin_part(request: HttpRequest) -> str | None:
    """What of the request's origin the page depends on: nothing with ``SITE_URL`` set (every
    link in the page is on it), else the scheme and host; None for a page not to store: a host
    ``ALLOWED_HOSTS`` refuses, or one not written canonically (``ALLOWED_HOSTS`` ignores case,
    a trailing dot and the port: each spelling would store a page of its own)."""
    if app_settings.SITE_URL:
        return ""
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    domain, port = split_domain_port(host)
    if host != (f"{domain}:{port}" if port else domain):
        return None
    if port and port != str(request.META.get("SERVER_PORT", "")):
        return None
    return f"{request.scheme}://{host}"


#: What names a stored page: (generation, origin, path, language, script prefix, URLconf,
#: settings digest). The process's copies are kept under it; ``PAGE_CACHE`` under its digest.
PageKey = tuple[str, ...]


def page_key(request: HttpRequest) -> PageKey | None:
    """The key of the page ``request`` asks for; None when the page is not to be stored (see
    :func:`_origin_part`).

    The query string is not part of it: the page is the same whatever ``utm_*`` it carries."""
    origin = _origin_part(request)
    if origin is None:
        return None
    return (
        generation(),
        origin,
        request.path,
        get_language() or "",
        get_script_prefix(),
        str(get_urlconf() or ""),
        _fingerprint(),
    )


def _shared_name(key: PageKey) -> str:
    """The name of the page ``key`` in ``PAGE_CACHE`` (hashed only when the process's own copy
    is missing: most requests never need it)."""
    digest = hashlib.sha256("\x00".join(key[1:]).encode()).hexdigest()[:40]
    return f"backpain_report:page:{key[0]}:{digest}"


def page_get(key: PageKey) -> StoredPage | object | None:
    """The stored page under ``key`` (this process's copy, else ``PAGE_CACHE``'s), or
    :data:`PER_READER`, or None."""
    age_limit = max_age()
    now = time.time()
    with _lock:
        found = _local.get(key)
        if found is not None:
            page, stored_at = found
            if page is PER_READER or now - stored_at < age_limit:
                _local.move_to_end(key)
                return page
            del _local[key]
    if not age_limit:
        return None
    cache = _cache()
    try:
        page = cache.get(_shared_name(key)) if cache is not None else None
    except Exception:
        logger.warning("Page cache unavailable; rendering the page", exc_info=True)
        return None
    if not isinstance(page, StoredPage) or now - page.rendered_at >= age_limit:
        return None
    _remember(key, page, page.rendered_at)
    return page


def _remember(key: PageKey, page: object, stored_at: float) -> None:
    with _lock:
        _local[key] = (page, stored_at)
        _local.move_to_end(key)
        while len(_local) > LOCAL_PAGES:
            _local.popitem(last=False)


def page_store(key: PageKey, page: StoredPage) -> None:
    """Keep ``page`` under ``key`` for ``PAGE_MAX_AGE`` seconds, here and in ``PAGE_CACHE``."""
    age_limit = max_age()
    if not age_limit:
        return
    _remember(key, page, page.rendered_at)
    _shared_set(_shared_name(key), page, age_limit, "the page is kept in this process")


def page_mark_per_reader(key: PageKey, reason: str) -> None:
    """Remember that the page under ``key`` depends on the reader, and say why (once)."""
    _remember(key, PER_READER, time.time())
    with _lock:
        first = reason not in _warned
        _warned.add(reason)
    if first:
        logger.warning(
            "The article page is not cacheable: rendering it %s, so it depends on the reader "
            "(usually the site's base template showing the user or messages). It is rendered "
            "per request and never marked public. See the docs, 'Caching the article page' "
            "(docs/howto/caching.md).",
            reason,
        )


def per_reader_response(response: HttpResponse) -> HttpResponse:
    """A page rendered for this reader, sent ``private, no-cache``: without a
    ``Cache-Control`` a shared cache may keep it (a stock Varnish does, 120 s) and serve it
    to other readers."""
    patch_cache_control(response, private=True, no_cache=True)
    return response


class ReaderWatch:
    """Watches one render for what makes a page depend on its reader: reading the session,
    asking for a CSRF token, reading messages. Only the render's own reads count (a middleware
    that read the session before the view, or the CSRF middleware renewing a malformed cookie,
    says nothing about the page); the request's flags are put back as they would have been.

    ``with ReaderWatch(request) as watch: response.render()``, then ``watch.reason(response)``.
    """

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.session = getattr(request, "session", None)
        self.messages = getattr(request, "_messages", None)
        self.found: list[str] = []

    def __enter__(self) -> ReaderWatch:
        meta = self.request.META
        self.csrf_before = meta.get("CSRF_COOKIE_NEEDS_UPDATE", False)
        meta["CSRF_COOKIE_NEEDS_UPDATE"] = False
        self.session_before = getattr(self.session, "accessed", False)
        if self.session is not None:
            self.session.accessed = False
        self.messages_before = self._messages_read()
        return self

    def _messages_read(self) -> bool:
        # Reading messages loads them (``_loaded_data``) even when there are none to show.
        messages = self.messages
        return messages is not None and (
            getattr(messages, "used", False) or hasattr(messages, "_loaded_data")
        )

    def __exit__(self, *exc: object) -> None:
        meta = self.request.META
        if getattr(self.session, "accessed", False):
            self.found.append("read the session (the user, or messages kept in the session)")
        if meta.get("CSRF_COOKIE_NEEDS_UPDATE"):
            self.found.append("asked for a CSRF token")
        if self._messages_read() and not self.messages_before:
            self.found.append("read messages")
        meta["CSRF_COOKIE_NEEDS_UPDATE"] = self.csrf_before or meta["CSRF_COOKIE_NEEDS_UPDATE"]
        if self.session is not None:
            self.session.accessed = self.session_before or self.session.accessed

    def reason(self, response: HttpResponse) -> str | None:
        """How the render made ``response`` depend on the reader, or None when it did not."""
        if self.found:
            return self.found[0]
        if response.cookies:
            return "set a cookie"
        if "cookie" in response.get("Vary", "").lower():
            return "varied on Cookie"
        return None


def page_from_response(response: HttpResponse, *, last_modified: int | None) -> StoredPage:
    """A rendered response as a page to keep."""
    content = bytes(response.content)
    return StoredPage(
        content=content,
        content_type=response.get("Content-Type", "text/html; charset=utf-8"),
        etag='"' + hashlib.sha256(content).hexdigest()[:32] + '"',
        last_modified=last_modified,
        rendered_at=time.time(),
    )


@functools.cache
def _locale_middleware_in_use() -> bool:
    """Whether ``MIDDLEWARE`` holds ``LocaleMiddleware`` or a site's subclass of it."""
    from django.middleware.locale import LocaleMiddleware
    from django.utils.module_loading import import_string

    for path in settings.MIDDLEWARE:
        try:
            found = import_string(path)
        except ImportError:
            continue
        if isinstance(found, type) and issubclass(found, LocaleMiddleware):
            return True
    return False


def _language_from_cookie(request: HttpRequest) -> bool:
    """Whether ``LocaleMiddleware`` may take this request's language from its cookie: a page
    in a language not told by ``Accept-Language`` must not reach a shared cache."""
    return _locale_middleware_in_use() and settings.LANGUAGE_COOKIE_NAME in request.COOKIES


class SharedPageResponse(HttpResponse):
    """A stored page's answer. A middleware that sets or deletes a cookie on it (the CSRF
    middleware renewing a malformed token cookie, the session middleware deleting a stale
    session cookie, messages kept in a cookie) makes it this reader's: it is then sent
    ``private``, never ``public`` with a ``Set-Cookie``."""

    def _make_private(self) -> None:
        self["Cache-Control"] = "private, no-cache"
        if "Age" in self:
            del self["Age"]

    def set_cookie(self, *args: Any, **kwargs: Any) -> None:
        super().set_cookie(*args, **kwargs)
        self._make_private()

    def delete_cookie(self, *args: Any, **kwargs: Any) -> None:
        super().delete_cookie(*args, **kwargs)
        self._make_private()


#: The request headers that make a GET conditional.
_CONDITIONAL = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
)


@functools.lru_cache(maxsize=256)
def _http_date(seconds: int) -> str:
    return http_date(seconds)


def page_response(request: HttpRequest, page: StoredPage) -> HttpResponse:
    """``page`` as the answer to ``request``: ``304`` to a matching conditional GET."""
    conditional = None
    if any(name in request.META for name in _CONDITIONAL):
        conditional = get_conditional_response(
            request, etag=page.etag, last_modified=page.last_modified
        )
    if conditional is None:
        response = SharedPageResponse(page.content, content_type=page.content_type)
    elif conditional.status_code == 304:
        response = SharedPageResponse(status=304)
        del response["Content-Type"]
    else:  # 412, to an If-Match or If-Unmodified-Since
        return conditional
    response["ETag"] = page.etag
    if page.last_modified is not None:
        response["Last-Modified"] = _http_date(page.last_modified)
    age = max(0, int(time.time() - page.rendered_at))
    if _language_from_cookie(request):
        response["Cache-Control"] = "private, no-cache"
    else:
        response["Cache-Control"] = public_cache_control()
        response["Age"] = str(age)
    return response


def public_cache_control() -> str:
    """The stored page's ``Cache-Control``: any cache may keep it for ``PAGE_MAX_AGE``, and
    none may serve it once stale while it fetches a fresh one (``stale-while-revalidate=0``):
    Varnish otherwise serves an expired copy for its grace (10 s by default), so an edit would
    reach a reader later than ``PAGE_MAX_AGE`` promises."""
    return f"public, max-age={max_age()}, stale-while-revalidate=0"


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in DEPENDS_ON:
        _fingerprint.cache_clear()
        _locale_middleware_in_use.cache_clear()
        pages_invalidate()
