"""System checks for the ``BACKPAIN_REPORT`` setting and what the app needs from the site.

- ``backpain_report.E001``: ``FROM_EMAIL`` is missing or not an email address.
- ``backpain_report.E002``: ``BACKPAIN_REPORT`` has an unknown key or a value of the wrong type.
- ``backpain_report.E003``: an app the package needs is not in ``INSTALLED_APPS``.
- ``backpain_report.W001``: ``SITE_URL`` is not set (links in emails use the sign-up page's host).
- ``backpain_report.W002``: Django 6.1+ without ``MAILERS``: mail goes through deprecated settings.
- ``backpain_report.W003``: the throttles count in a per-process cache (local memory or dummy)
  while ``DEBUG`` is off, so each web process has its own limits.
- ``backpain_report.W004``: the throttles count in a database or file cache while ``DEBUG`` is
  off: those cannot count atomically, so concurrent hits lose counts.
"""

from __future__ import annotations

from email.utils import parseaddr
from numbers import Real

from django.apps import apps
from django.conf import settings
from django.core import mail
from django.core.checks import Error, Tags, Warning, register

from .conf import DEFAULTS, SETTING_NAME, user_settings

_TYPES: dict[str, tuple[type, ...]] = {
    "FROM_EMAIL": (str,),
    "SITE_URL": (str, type(None)),
    "DEFAULT_ARTICLE": (str,),
    "CONSENT_TEXT": (str,),
    "CONSENT_VERSION": (str, int),
    "HASH_IP": (bool,),
    "MAX_ATTEMPTS": (int,),
    "RETRY_BACKOFF": (Real,),
    "RETRY_BACKOFF_MAX": (Real,),
    "CLAIM_LEASE": (Real,),
    "SWEEP_GRACE": (Real,),
    "PUBLISH_TIMEOUT": (Real,),
    "MAILER": (str, type(None)),
    "MAX_EMAIL_SIZE": (int,),
    "DELIVERY": (str,),
    "DOWNLOAD_MAX_AGE": (int,),
    "PDF_CACHE_STORAGE": (str,),
    "DOUBLE_OPT_IN": (bool,),
    "CONFIRM_MAX_AGE": (int,),
    "THROTTLE_IP": (tuple, list),
    "THROTTLE_ADDRESS_WINDOW": (int,),
    "THROTTLE_CACHE": (str,),
    "TRUSTED_PROXIES": (int,),
}
REQUIRED_APPS = ["crispy_forms", "crispy_bootstrap5"]
DELIVERY_MODES = ("attach", "link", "both")


def _wrong_type(value: object, expected: tuple[type, ...] | None) -> bool:
    if not expected:
        return False
    # bool is an int: accept it only where a bool is expected.
    return not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    errors: list = []
    raw = getattr(settings, SETTING_NAME, None)
    if raw is not None and not isinstance(raw, dict):
        return [Error(f"{SETTING_NAME} must be a dict.", id="backpain_report.E002")]
    config = user_settings()
    for key, value in config.items():
        if key not in DEFAULTS:
            errors.append(
                Error(f"{SETTING_NAME} has an unknown key {key!r}.", id="backpain_report.E002")
            )
        elif _wrong_type(value, _TYPES.get(key)):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] has the wrong type: {type(value).__name__}.",
                    id="backpain_report.E002",
                )
            )
    if config.get("DELIVERY", "attach") not in DELIVERY_MODES:
        errors.append(
            Error(
                f"{SETTING_NAME}['DELIVERY'] must be one of {', '.join(DELIVERY_MODES)}.",
                id="backpain_report.E002",
            )
        )
    storage = config.get("PDF_CACHE_STORAGE", DEFAULTS["PDF_CACHE_STORAGE"])
    if isinstance(storage, str) and storage not in settings.STORAGES:
        errors.append(
            Error(
                f"{SETTING_NAME}['PDF_CACHE_STORAGE'] names {storage!r}, which is not in "
                "settings.STORAGES.",
                id="backpain_report.E002",
            )
        )
    from_email = config.get("FROM_EMAIL")
    if not isinstance(from_email, str) or "@" not in parseaddr(from_email)[1]:
        errors.append(
            Error(
                f"{SETTING_NAME}['FROM_EMAIL'] must be set to the sender of the report emails.",
                hint='For example: {"FROM_EMAIL": "Reports <reports@example.com>"}',
                id="backpain_report.E001",
            )
        )
    for app in REQUIRED_APPS:
        if not apps.is_installed(app):
            errors.append(
                Error(
                    f"backpain_report needs {app!r} in INSTALLED_APPS.",
                    id="backpain_report.E003",
                )
            )
    if not config.get("SITE_URL"):
        errors.append(
            Warning(
                f"{SETTING_NAME}['SITE_URL'] is not set.",
                hint="Links in emails will use the host of the page each reader signed up on. "
                'Set it, e.g. "https://www.example.com".',
                id="backpain_report.W001",
            )
        )
    if hasattr(mail, "mailers") and not hasattr(settings, "MAILERS"):
        errors.append(
            Warning(
                "Django 6.1+ sends mail through MAILERS, which is not set.",
                hint="Define settings.MAILERS; the app sends through the 'default' mailer "
                f"unless {SETTING_NAME}['MAILER'] names another.",
                id="backpain_report.W002",
            )
        )
    errors.extend(_check_throttle_cache(config))
    return errors


PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


# Django's caches whose incr() is a get and a set: concurrent hits overwrite each other.
NON_ATOMIC_CACHES = (
    "django.core.cache.backends.db.DatabaseCache",
    "django.core.cache.backends.filebased.FileBasedCache",
)


def _check_throttle_cache(config: dict) -> list:
    alias = config.get("THROTTLE_CACHE", DEFAULTS["THROTTLE_CACHE"])
    backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
    name = backend.rsplit(".", 1)[-1]
    if settings.DEBUG:
        return []
    hint = "Point THROTTLE_CACHE at Redis or Memcached, which every web process shares."
    if backend in PER_PROCESS_CACHES:
        return [
            Warning(
                f"The throttles count in the {alias!r} cache ({name}), which each process keeps "
                "for itself.",
                hint=hint,
                id="backpain_report.W003",
            )
        ]
    if backend in NON_ATOMIC_CACHES:
        return [
            Warning(
                f"The throttles count in the {alias!r} cache ({name}), which cannot count "
                "atomically: concurrent requests lose counts, so the limits let more through.",
                hint=hint,
                id="backpain_report.W004",
            )
        ]
    return []
