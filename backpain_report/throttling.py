"""Abuse limits counted in Django's cache: sign-ups per client IP, emails per address.

A cache outage never turns into an error page: the throttle then lets requests through (fails
open) and logs a warning, because refusing every reader is worse than a brief lack of limits.
"""

from __future__ import annotations

import hashlib
import logging

from django.core.cache import caches
from django.http import HttpRequest

from .conf import app_settings

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP: ``REMOTE_ADDR``, or with ``TRUSTED_PROXIES = n`` the n-th address from
    the right of ``X-Forwarded-For`` (the one your outermost trusted proxy saw)."""
    proxies = int(app_settings.TRUSTED_PROXIES)
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.headers.get("X-Forwarded-For", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def _key(kind: str, value: str) -> str:
    return f"backpain_report:throttle:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _hit(key: str, limit: int, window: int) -> bool:
    """Count one event; True while within ``limit`` per ``window`` seconds."""
    try:
        cache = caches[app_settings.THROTTLE_CACHE]
        if cache.add(key, 1, timeout=window):
            return True
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, timeout=window)
            return True
        return count <= limit
    except Exception:
        logger.warning("Throttle cache unavailable; allowing the request", exc_info=True)
        return True


def ip_allowed(ip: str | None) -> bool:
    """Count a sign-up from ``ip``; False once it exceeds ``THROTTLE_IP`` (count, seconds)."""
    if not ip:
        return True
    limit, window = app_settings.THROTTLE_IP
    return _hit(_key("ip", ip), int(limit), int(window))


def address_allowed(canonical_email: str) -> bool:
    """Count an email to this address; False if one went within ``THROTTLE_ADDRESS_WINDOW``."""
    return _hit(_key("address", canonical_email), 1, int(app_settings.THROTTLE_ADDRESS_WINDOW))
