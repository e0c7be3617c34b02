"""The app's settings: one ``BACKPAIN_REPORT`` dict merged over the defaults below.

Read every value through :func:`get` (or ``app_settings.KEY``) at call time, never at import
time, so ``override_settings`` works. The merged dict is cached and the cache is dropped
whenever Django's ``setting_changed`` signal names ``BACKPAIN_REPORT``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

SETTING_NAME = "BACKPAIN_REPORT"

DEFAULTS: dict[str, Any] = {
    # Sender of every email, e.g. "Reports <reports@example.com>". Required.
    "FROM_EMAIL": None,
    # Scheme and host (and optionally a port) used for links in emails
    # ("https://www.example.com"), no path (check E002); links carry the host IDNA-encoded.
    # When unset, the origin of the page the reader signed up on is used.
    "SITE_URL": None,
    # Slug of the article shown at the root of the app's URLs.
    "DEFAULT_ARTICLE": "back-pain-muscle-spasms-finding-the-culprits",
    # The consent checkbox label and its version (at most 20 characters), stored with every
    # sign-up. The defaults of the texts readers see are shown in the reader's language.
    "CONSENT_TEXT": _(
        "Yes, email me the free report. I can unsubscribe at any time with one click."
    ),
    "CONSENT_VERSION": "1",
    # The site's privacy notice: a URL or a path on the site ("/privacy/"), linked next to the
    # consent checkbox and in every email's footer. Unset with DEBUG off: check W007.
    "PRIVACY_URL": None,
    # The heading of the offer on the article page (the report's title, cover and contents
    # follow it). Keep it to what the report gives: it is general information, not treatment.
    "OFFER_HEADING": _("Get the free guide to back muscle spasms"),
    # Store a keyed hash of the reader's IP instead of the address itself.
    "HASH_IP": True,
    # Delivery attempts before a delivery is marked failed (taking over an expired claim counts).
    "MAX_ATTEMPTS": 5,
    # Exponential backoff between attempts: base * 2**(attempt-1), capped, plus jitter.
    "RETRY_BACKOFF": 30,
    "RETRY_BACKOFF_MAX": 3600,
    # Seconds after which a "sending" claim is considered abandoned and may be reclaimed. It must
    # cover a render and handing the message to the server (check E004); with no mail timeout
    # set, Django's SMTP backend gets one derived from it (see mailer.py).
    "CLAIM_LEASE": 600,
    # Seconds a "pending" delivery may wait for its message before the sweep re-enqueues it.
    "SWEEP_GRACE": 60,
    # Seconds a sign-up may spend publishing to the broker before giving up (the sweep sends).
    "PUBLISH_TIMEOUT": 1.0,
    # Name of the Django mailer (Django 6.1+ MAILERS alias) used to send; None = default.
    "MAILER": None,
    # How the report reaches the reader: "attach" (the PDF), "link" (a signed download link) or
    # "both".
    "DELIVERY": "attach",
    # Seconds a download link stays valid.
    "DOWNLOAD_MAX_AGE": 30 * 24 * 3600,
    # Alias in settings.STORAGES of the app's private files: the report body cached once per
    # edition and the readers' PDFs served by download links. None: the "backpain_report" alias
    # if STORAGES has one, else a private directory in the temp dir (see privatestorage.py).
    "PRIVATE_STORAGE": None,
    # Ceiling in bytes for one email; a report that would exceed it is sent as a link instead.
    "MAX_EMAIL_SIZE": 10 * 1024 * 1024,
    # Double opt-in: send a confirmation link first, the report only once it is confirmed.
    "DOUBLE_OPT_IN": False,
    # Seconds a confirmation link stays valid.
    "CONFIRM_MAX_AGE": 7 * 24 * 3600,
    # Sign-ups allowed per client IP per window: (count, seconds).
    "THROTTLE_IP": (10, 3600),
    # Seconds during which one address gets at most one report or confirmation email.
    "THROTTLE_ADDRESS_WINDOW": 3600,
    # Downloads allowed per download link and, separately, per client IP: (count, seconds).
    "THROTTLE_DOWNLOAD": (30, 3600),
    # Cache alias the throttles count in.
    "THROTTLE_CACHE": "default",
    # Reverse proxies in front of Django that append to X-Forwarded-For (0: use REMOTE_ADDR;
    # requests without a client IP share one throttle count).
    "TRUSTED_PROXIES": 0,
    # The next step on the report's closing page: {"text": "...", "url": "https://..."}, an
    # absolute http(s) URL (check E002). None: a link back to the site (SITE_URL and the app's
    # home page); without SITE_URL the closing page has no next step.
    "REPORT_CTA": None,
    # Soft bounces (temporary failures the email service reports through anymail's tracking
    # webhooks) that suppress an address: (count, seconds), that many within the window.
    "SOFT_BOUNCE_LIMIT": (3, 7 * 24 * 3600),
}


@cache
def _merged() -> dict[str, Any]:
    user = getattr(settings, SETTING_NAME, {}) or {}
    return {**DEFAULTS, **user}


def get(key: str) -> Any:
    """Return the current value of one app setting."""
    if key not in DEFAULTS:
        raise KeyError(f"{SETTING_NAME} has no key {key!r}")
    return _merged()[key]


def user_settings() -> dict[str, Any]:
    """Return the site's raw ``BACKPAIN_REPORT`` dict (for the system checks)."""
    value = getattr(settings, SETTING_NAME, {})
    return value if isinstance(value, dict) else {}


@receiver(setting_changed)
def _reset_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        _merged.cache_clear()


class _AppSettings:
    """Attribute access to the settings: ``app_settings.MAX_ATTEMPTS``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return get(name)
        except KeyError as exc:
            raise AttributeError(name) from exc


app_settings = _AppSettings()
