"""Abuse limits counted in Django's cache: sign-ups per client IP, emails per address, downloads
per link and per client IP.

A count's window starts at its first hit and lasts exactly its ``seconds``, on every cache
backend Django ships. Backends with an ``incr`` of their own (local memory, Redis, Memcached)
count atomically and keep the key's expiry; on Redis a count is one round trip (``SET NX EX``
and ``INCR`` in one ``MULTI``) instead of the three of Django's ``add`` and ``incr``. Django's
generic ``incr`` (database and file caches) is a get and a set that puts the default
``TIMEOUT`` (300 s) back on the key; there the count is stored with its deadline and set again
with the time left, so the window holds, but concurrent hits can overwrite each other's counts
(system check W004).

IPv6 clients are counted per /64 (one home or host usually has a whole /64); IPv4-mapped IPv6
addresses count as their IPv4 address. Requests without a client IP (``REMOTE_ADDR`` empty, as
with gunicorn on a unix socket behind a proxy and ``TRUSTED_PROXIES`` left at 0) cannot be told
apart, so they share one count, and a warning says so once per process.

A cache outage never turns into an error page: the throttle then lets requests through (fails
open) and logs a warning, because refusing every reader is worse than a brief lack of limits.
So does a limit setting of the wrong shape (system check E013 reports it; gunicorn does not run
the checks): the throttle lets requests through and logs an error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest

from ..conf import app_settings
from ..config.validators import is_count, limit_parse  # noqa: F401  (this module's API too)

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text`` (``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _setting_limit(name: str) -> tuple[int, int] | None:
    """The ``(count, seconds)`` in setting ``name``; None (and an error logged) if misshapen."""
    limit = limit_parse(getattr(app_settings, name))
    if limit is None:
        logger.error(
            "BACKPAIN_REPORT[%r] is not (count, seconds), two positive integers; allowing the "
            "request (system check backpain_report.E013).",
            name,
        )
    return limit


def _trusted_proxies() -> int:
    proxies = app_settings.TRUSTED_PROXIES
    if isinstance(proxies, int) and not isinstance(proxies, bool) and proxies >= 0:
        return proxies
    logger.error(
        "BACKPAIN_REPORT['TRUSTED_PROXIES'] is not an integer >= 0; using REMOTE_ADDR "
        "(system checks backpain_report.E002, E014)."
    )
    return 0


def _ip_text(address: IPAddress) -> str:
    """An address as text, without an IPv6 zone ("fe80::1%eth0" is "fe80::1"): at most 45
    characters, so it fits the consent record's column when ``HASH_IP`` is off."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))
    return str(address)


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP: ``REMOTE_ADDR``, or with ``TRUSTED_PROXIES = n`` the n-th address from
    the right of ``X-Forwarded-For`` (the one your outermost trusted proxy saw); an entry there
    that is not an IP address is ignored for ``REMOTE_ADDR``. None when there is no IP address
    (``REMOTE_ADDR`` empty, or not an address, as behind a proxy on a unix socket)."""
    proxies = _trusted_proxies()
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.headers.get("X-Forwarded-For", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            address = parse_ip(forwarded[-proxies])
            if address is not None:
                return _ip_text(address)
    address = parse_ip(request.META.get("REMOTE_ADDR") or "")
    return _ip_text(address) if address is not None else None


def ip_bucket(ip: str) -> str:
    """What a client IP is counted as: IPv4 per address, IPv6 per /64, IPv4-mapped IPv6 as the
    IPv4 address; text that is no address counts as itself."""
    address = parse_ip(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = int(address) >> 64 << 64
        return f"{ipaddress.IPv6Address(prefix)}/64"
    return str(address)


# What requests without a client IP are counted as: one bucket for them all.
NO_CLIENT_IP = "no-client-ip"
_warned_no_client_ip = False


def _warn_no_client_ip() -> None:
    global _warned_no_client_ip
    if _warned_no_client_ip:
        return
    _warned_no_client_ip = True
    logger.warning(
        "A request came without a client IP (REMOTE_ADDR is empty or not an address, e.g. a "
        "server on a unix socket behind a proxy): every such request shares one throttle "
        "count. Behind a reverse proxy, set BACKPAIN_REPORT['TRUSTED_PROXIES']."
    )


def _ip_key(kind: str, ip: str | None) -> str:
    """The throttle key of a client IP; requests without one share a key."""
    if not ip:
        _warn_no_client_ip()
        return _key(kind, NO_CLIENT_IP)
    return _key(kind, ip_bucket(ip))


def _key(kind: str, value: str) -> str:
    return f"backpain_report:throttle:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def counts_atomically(cache: BaseCache) -> bool:
    """Whether ``cache`` has an ``incr`` of its own (atomic, keeps the expiry)."""
    return type(cache).incr is not BaseCache.incr


def _count_native(cache: BaseCache, key: str, window: int) -> int:
    if cache.add(key, 1, timeout=window):
        return 1
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.add(key, 1, timeout=window)
        return 1
    if count == 1:
        # The key expired between add() and incr() and incr() made it afresh: Redis's INCR
        # does that without an expiry, so give it one.
        cache.touch(key, window)
    return count


def is_plain_redis(cache: BaseCache) -> bool:
    """Whether ``cache`` is Django's own RedisCache (a subclass may store keys its own way)."""
    return type(cache) is RedisCache


def redis_count(cache: RedisCache, key: str, window: int) -> int:
    """Count one hit under ``key`` in Django's RedisCache in one round trip: create the key with
    its expiry unless it exists, then increment it (``INCR`` keeps the expiry), atomically.
    Django stores integers as plain Redis integers, so ``cache.get(key)`` reads the count."""
    name = cache.make_and_validate_key(key)
    client = cache._cache.get_client(name, write=True)
    pipeline = client.pipeline(transaction=True)
    pipeline.set(name, 0, ex=window, nx=True)
    pipeline.incr(name)
    return int(pipeline.execute()[1])


def _count_generic(cache: BaseCache, key: str, window: int) -> int:
    now = time.time()
    fresh = (1, now + window)
    if cache.add(key, fresh, timeout=window):
        return 1
    entry: Any = cache.get(key)
    try:
        count, deadline = int(entry[0]), float(entry[1])
    except (TypeError, ValueError, IndexError, KeyError):
        count, deadline = 0, now
    if deadline <= now:  # gone, expired, or not ours: start a new window
        cache.set(key, fresh, timeout=window)
        return 1
    cache.set(key, (count + 1, deadline), timeout=deadline - now)
    return count + 1


def hit_count(key: str, window: int) -> int:
    """Count one event under ``key`` in ``THROTTLE_CACHE``; the count within its window."""
    cache = caches[app_settings.THROTTLE_CACHE]
    if is_plain_redis(cache):
        return redis_count(cache, key, window)  # type: ignore[arg-type]
    if counts_atomically(cache):
        return _count_native(cache, key, window)
    return _count_generic(cache, key, window)


def _hit(key: str, limit: int, window: int) -> bool:
    """Count one event; True while within ``limit`` per ``window`` seconds."""
    try:
        return hit_count(key, window) <= limit
    except Exception:
        logger.warning("Throttle cache unavailable; allowing the request", exc_info=True)
        return True


def ip_allowed(ip: str | None) -> bool:
    """Count a sign-up from ``ip``; False once it exceeds ``THROTTLE_IP`` (count, seconds).
    Sign-ups without an IP (None) are counted together."""
    limit = _setting_limit("THROTTLE_IP")
    if limit is None:
        return True
    return _hit(_ip_key("ip", ip), *limit)


def address_allowed(canonical_email: str) -> bool:
    """Count an email to this address; False if one went within ``THROTTLE_ADDRESS_WINDOW``."""
    window = app_settings.THROTTLE_ADDRESS_WINDOW
    if not isinstance(window, int) or isinstance(window, bool):
        logger.error(
            "BACKPAIN_REPORT['THROTTLE_ADDRESS_WINDOW'] is not an integer; allowing the request "
            "(system check backpain_report.E002)."
        )
        return True
    if window <= 0:
        return True  # no window
    return _hit(_key("address", canonical_email), 1, window)


def download_ip_allowed(ip: str | None) -> bool:
    """Count a download request from ``ip``; False once it exceeds ``THROTTLE_DOWNLOAD``.
    Requests without an IP (None) are counted together."""
    limit = _setting_limit("THROTTLE_DOWNLOAD")
    if limit is None:
        return True
    return _hit(_ip_key("download-ip", ip), *limit)


def download_link_allowed(delivery_id: int) -> bool:
    """Count a download of one delivery's link; False once it exceeds ``THROTTLE_DOWNLOAD``."""
    limit = _setting_limit("THROTTLE_DOWNLOAD")
    if limit is None:
        return True
    return _hit(_key("download-link", str(delivery_id)), *limit)


def address_window_text() -> str:
    """``THROTTLE_ADDRESS_WINDOW`` in words, in the active language ("1 hour", "2 days"); ""
    when there is no window (or it is misshapen, check E002)."""
    import datetime

    from django.utils.timesince import timesince

    window = app_settings.THROTTLE_ADDRESS_WINDOW
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return ""
    start = datetime.datetime(2000, 1, 1)  # any moment: only the span is put in words
    return timesince(start, start + datetime.timedelta(seconds=window), depth=2)
