"""System checks for the ``BACKPAIN_REPORT`` setting and what the app needs from the site.

- ``backpain_report.E001``: ``FROM_EMAIL`` is missing or not an email address, or no Message-ID
  that fits its column can be made from its domain.
- ``backpain_report.E002``: ``BACKPAIN_REPORT`` has an unknown key or a value of the wrong type,
  or a value it cannot use (too long for the column that stores it, a throttle limit that is not
  two positive integers, an alias that is not configured, a ``SITE_URL`` that is not an http(s)
  origin, a ``REPORT_CTA`` without a text and an absolute http(s) URL, a blank
  ``OFFER_HEADING``, a ``PRIVACY_URL`` that is neither an http(s) URL nor a path on the site).
- ``backpain_report.E003``: an app the package needs is not in ``INSTALLED_APPS``.
- ``backpain_report.E004``: the mail timeout is too long for ``CLAIM_LEASE``: a render plus
  handing the message to the server could outlast the claim, and another worker send it again.
- ``backpain_report.E005``: ``USE_TZ`` is off (the app stores and compares aware datetimes).
- ``backpain_report.E006``: ``SITE_URL`` is not set while ``DEBUG`` is off: links in emails would
  follow the ``Host`` header of the sign-up request.
- ``backpain_report.W001``: ``SITE_URL`` is not set with ``DEBUG`` on (links in emails use the
  sign-up page's host).
- ``backpain_report.W002``: Django 6.1+ without ``MAILERS``: mail goes through deprecated settings.
- ``backpain_report.W003``: the throttles count in a per-process cache (local memory or dummy)
  while ``DEBUG`` is off, so each web process has its own limits.
- ``backpain_report.W004``: the throttles count in a database or file cache while ``DEBUG`` is
  off: those cannot count atomically, so concurrent hits lose counts.
- ``backpain_report.W005``: the private storage (readers' PDFs) is a public one: the
  ``default`` or ``staticfiles`` storage, one with a ``base_url``, or a directory inside
  ``MEDIA_ROOT`` or ``STATIC_ROOT``.
- ``backpain_report.W006``: no private storage is configured while ``DEBUG`` is off, so the app
  keeps its files in a per-host temporary directory.
- ``backpain_report.W007``: ``PRIVACY_URL`` is not set while ``DEBUG`` is off: the consent
  checkbox and the emails link to no privacy notice.
"""

from __future__ import annotations

import os
from email.utils import parseaddr
from numbers import Real

from django.apps import apps
from django.conf import settings
from django.core import mail
from django.core.checks import Error, Tags, Warning, register
from django.core.files.storage import FileSystemStorage, storages
from django.utils import timezone
from django.utils.functional import Promise

from .conf import DEFAULTS, SETTING_NAME, user_settings
from .links import privacy_url_problem, report_cta_problem, site_url_problem
from .mailer import (
    RENDER_BUDGET,
    SMTP_WAITS_PER_MESSAGE,
    lease_mail_timeout,
    mail_timeout,
    send_time_bound,
)
from .privatestorage import SITE_ALIAS, fallback_location
from .throttling import limit_parse

_TYPES: dict[str, tuple[type, ...]] = {
    "FROM_EMAIL": (str,),
    "SITE_URL": (str, type(None)),
    "DEFAULT_ARTICLE": (str,),
    "CONSENT_TEXT": (str, Promise),  # Promise: gettext_lazy("..."), shown translated
    "CONSENT_VERSION": (str, int),
    "PRIVACY_URL": (str, type(None)),
    "OFFER_HEADING": (str, Promise),
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
    "PRIVATE_STORAGE": (str, type(None)),
    "DOUBLE_OPT_IN": (bool,),
    "CONFIRM_MAX_AGE": (int,),
    "THROTTLE_IP": (tuple, list),
    "THROTTLE_ADDRESS_WINDOW": (int,),
    "THROTTLE_DOWNLOAD": (tuple, list),
    "THROTTLE_CACHE": (str,),
    "TRUSTED_PROXIES": (int,),
    "REPORT_CTA": (dict, type(None)),
    "SOFT_BOUNCE_LIMIT": (tuple, list),
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
    heading = config.get("OFFER_HEADING")
    if isinstance(heading, (str, Promise)) and not str(heading).strip():
        errors.append(
            Error(
                f"{SETTING_NAME}['OFFER_HEADING'] is blank: the offer would have an empty "
                "heading (its default is shown instead).",
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
    errors.extend(_unknown_alias(config, "PRIVATE_STORAGE", "STORAGES"))
    errors.extend(_check_from_email(config))
    for app in REQUIRED_APPS:
        if not apps.is_installed(app):
            errors.append(
                Error(
                    f"backpain_report needs {app!r} in INSTALLED_APPS.",
                    id="backpain_report.E003",
                )
            )
    errors.extend(_check_stored_values(config))
    errors.extend(_check_site_url(config))
    errors.extend(_check_report_cta(config))
    errors.extend(_check_time_zone())
    if hasattr(mail, "mailers") and not hasattr(settings, "MAILERS"):
        errors.append(
            Warning(
                "Django 6.1+ sends mail through MAILERS, which is not set.",
                hint="Define settings.MAILERS; the app sends through the 'default' mailer "
                f"unless {SETTING_NAME}['MAILER'] names another.",
                id="backpain_report.W002",
            )
        )
    errors.extend(_check_throttle_values(config))
    errors.extend(_check_throttle_cache(config))
    errors.extend(_check_claim_lease(config))
    errors.extend(_check_private_storage(config))
    errors.extend(_check_privacy_url(config))
    return errors


def _check_privacy_url(config: dict) -> list:
    """E002 for a PRIVACY_URL that is neither an http(s) URL nor a path on the site; W007 when
    it is unset in production (readers are asked to consent with no privacy notice to read)."""
    url = config.get("PRIVACY_URL")
    if isinstance(url, str) and url:
        problem = privacy_url_problem(url)
        if problem is None:
            return []
        return [
            Error(
                f"{SETTING_NAME}['PRIVACY_URL'] {problem}: got {url!r}.",
                hint="Browsers read a backslash as a slash and drop tabs and newlines, so a "
                "path holding one may lead to another host.",
                id="backpain_report.E002",
            )
        ]
    if url or settings.DEBUG:
        return []  # not a str: E002 says so
    return [
        Warning(
            f"{SETTING_NAME}['PRIVACY_URL'] is not set: the consent checkbox and the emails "
            "link to no privacy notice.",
            hint='Set it to your privacy notice, e.g. "/privacy/" or "https://www.example.com/'
            'privacy/".',
            id="backpain_report.W007",
        )
    ]


def _check_from_email(config: dict) -> list:
    """E001 unless FROM_EMAIL is an address whose domain makes a Message-ID that fits its column
    (every email's Message-ID is built from that domain and stored on its delivery)."""
    from_email = config.get("FROM_EMAIL")
    hint = 'For example: {"FROM_EMAIL": "Reports <reports@example.com>"}'
    if not isinstance(from_email, str) or "@" not in parseaddr(from_email)[1]:
        return [
            Error(
                f"{SETTING_NAME}['FROM_EMAIL'] must be set to the sender of the report emails.",
                hint=hint,
                id="backpain_report.E001",
            )
        ]
    from .emails import delivery_message_id
    from .models import Delivery

    limit = Delivery._meta.get_field("message_id").max_length
    largest = Delivery(pk=2**63 - 1, created_at=timezone.now())  # the longest id a pk makes
    try:
        length = len(delivery_message_id(largest))
    except UnicodeError:
        return [
            Error(
                f"{SETTING_NAME}['FROM_EMAIL'] has a domain that is not a valid host name "
                "(it cannot be IDNA-encoded), so no email could be sent.",
                hint=hint,
                id="backpain_report.E001",
            )
        ]
    if length > limit:
        return [
            Error(
                f"{SETTING_NAME}['FROM_EMAIL'] has a domain too long for the Message-ID built "
                f"from it: up to {length} characters, stored in a column of {limit}.",
                hint=hint,
                id="backpain_report.E001",
            )
        ]
    return []


def _check_stored_values(config: dict) -> list:
    """E002 for a value stored with every sign-up that is longer than its column (a database
    with real varchar limits, PostgreSQL, would refuse every sign-up with a 500)."""
    from .models import PendingSignup, Subscriber

    errors = []
    version = config.get("CONSENT_VERSION", DEFAULTS["CONSENT_VERSION"])
    if not _wrong_type(version, _TYPES["CONSENT_VERSION"]):
        limit = min(
            model._meta.get_field("consent_version").max_length
            for model in (PendingSignup, Subscriber)
        )
        if len(str(version)) > limit:
            errors.append(
                Error(
                    f"{SETTING_NAME}['CONSENT_VERSION'] is {len(str(version))} characters long; "
                    f"it is stored with every sign-up in a column of {limit}.",
                    hint=f'Use a short label, e.g. "2025-06-v3" (at most {limit} characters).',
                    id="backpain_report.E002",
                )
            )
    return errors


def _check_site_url(config: dict) -> list:
    """Without SITE_URL links in emails follow the request's Host header: fine on a developer's
    machine, an error in production (a forged Host would pick the links' host). A SITE_URL
    that is set must be an origin, ``https://host[:port]`` (E002)."""
    configured = config.get("SITE_URL")
    if isinstance(configured, str) and configured:
        problem = site_url_problem(configured)
        if problem is None:
            return []
        return [
            Error(
                f"{SETTING_NAME}['SITE_URL'] {problem}: got {configured!r}.",
                hint="Links in emails are SITE_URL followed by the app's paths. For a site "
                "served under a sub-path, set FORCE_SCRIPT_NAME.",
                id="backpain_report.E002",
            )
        ]
    if configured:
        return []  # not a str: E002 says so
    hint = (
        "Links in emails would use the Host header of the request each reader signed up with. "
        'Set it to the site\'s canonical origin, e.g. "https://www.example.com".'
    )
    if settings.DEBUG:
        return [
            Warning(f"{SETTING_NAME}['SITE_URL'] is not set.", hint=hint, id="backpain_report.W001")
        ]
    return [
        Error(
            f"{SETTING_NAME}['SITE_URL'] must be set when DEBUG is off.",
            hint=hint,
            id="backpain_report.E006",
        )
    ]


def _check_report_cta(config: dict) -> list:
    """E002 for a ``REPORT_CTA`` dict without a usable text and absolute http(s) URL."""
    value = config.get("REPORT_CTA")
    if not isinstance(value, dict):
        return []  # None is the default; another type is E002 already
    problem = report_cta_problem(value)
    if problem is None:
        return []
    return [
        Error(
            f"{SETTING_NAME}['REPORT_CTA'] {problem}.",
            hint='For example: {"text": "Book a free call with our physiotherapist", '
            '"url": "https://www.example.com/book/"}.',
            id="backpain_report.E002",
        )
    ]


def _check_time_zone() -> list:
    if settings.USE_TZ:
        return []
    return [
        Error(
            "backpain_report needs USE_TZ = True.",
            hint="The app stores and compares timezone-aware datetimes (sign-up, delivery and "
            "download times); with USE_TZ off its pages and tasks fail.",
            id="backpain_report.E005",
        )
    ]


def _check_claim_lease(config: dict) -> list:
    """E004 when a render plus the SMTP exchange, at the mail timeout, can outlast the lease."""
    lease = config.get("CLAIM_LEASE", DEFAULTS["CLAIM_LEASE"])
    if _wrong_type(lease, _TYPES["CLAIM_LEASE"]):
        return []  # E002 says so
    configured = mail_timeout()
    timeout = lease_mail_timeout(lease) if configured is None else configured
    needed = send_time_bound(timeout)
    if needed <= lease:
        return []
    source = "the mail timeout" if configured is not None else "the smallest mail timeout (1 s)"
    return [
        Error(
            f"{SETTING_NAME}['CLAIM_LEASE'] ({lease:g} s) is shorter than one delivery may take "
            f"with {source}: {needed:g} s ({RENDER_BUDGET:g} s to render, then up to "
            f"{SMTP_WAITS_PER_MESSAGE} SMTP replies of {timeout:g} s each). Another worker could "
            "reclaim the delivery while it is being sent and send it again.",
            hint="Raise CLAIM_LEASE or lower the timeout (EMAIL_TIMEOUT on Django 5.2, the "
            "mailer's OPTIONS['timeout'] in MAILERS on 6.1+).",
            id="backpain_report.E004",
        )
    ]


THROTTLE_LIMITS = ("THROTTLE_IP", "THROTTLE_DOWNLOAD", "SOFT_BOUNCE_LIMIT")  # (count, seconds)


def _check_throttle_values(config: dict) -> list:
    """E002 for throttle settings of the right type but an unusable value: a limit that is not
    two positive ints, a negative TRUSTED_PROXIES, a THROTTLE_CACHE that is not in CACHES."""
    errors = []
    for key in THROTTLE_LIMITS:
        value = config.get(key, DEFAULTS[key])
        if not _wrong_type(value, _TYPES[key]) and limit_parse(value) is None:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be (count, seconds), two positive integers: "
                    f"got {value!r}.",
                    hint=f"For example: {DEFAULTS[key]!r}.",
                    id="backpain_report.E002",
                )
            )
    proxies = config.get("TRUSTED_PROXIES", DEFAULTS["TRUSTED_PROXIES"])
    if not _wrong_type(proxies, _TYPES["TRUSTED_PROXIES"]) and proxies < 0:
        errors.append(
            Error(
                f"{SETTING_NAME}['TRUSTED_PROXIES'] must be 0 or more: got {proxies}.",
                id="backpain_report.E002",
            )
        )
    errors.extend(_unknown_alias(config, "THROTTLE_CACHE", "CACHES"))
    return errors


def _unknown_alias(config: dict, key: str, setting: str) -> list:
    """E002 when ``config[key]`` names an alias that ``settings.<setting>`` does not define."""
    alias = config.get(key, DEFAULTS[key])
    if not isinstance(alias, str) or alias in getattr(settings, setting):
        return []
    return [
        Error(
            f"{SETTING_NAME}[{key!r}] names {alias!r}, which is not in settings.{setting}.",
            id="backpain_report.E002",
        )
    ]


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
    if not isinstance(alias, str):
        return []  # E002 says so
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


PUBLIC_STORAGES = ("default", "staticfiles")


def _inside(path: object, root: object) -> bool:
    if not root:
        return False
    path, root = os.path.abspath(str(path)), os.path.abspath(str(root))
    return os.path.commonpath([path, root]) == root


def _public_reason(alias: str) -> str | None:
    """Why the storage ``alias`` looks public, or None."""
    if alias in PUBLIC_STORAGES:
        return f"it is the {alias!r} storage, which sites serve publicly"
    try:
        storage = storages[alias]
    except Exception:  # noqa: BLE001 - a missing alias is E002, a broken one fails elsewhere
        return None
    if getattr(storage, "base_url", None):
        return f"it has a base_url ({storage.base_url!r}), so its files have public URLs"
    if isinstance(storage, FileSystemStorage):
        for root in ("MEDIA_ROOT", "STATIC_ROOT"):
            if _inside(storage.location, getattr(settings, root, None)):
                return f"its directory is inside {root}"
    return None


def _check_private_storage(config: dict) -> list:
    named = config.get("PRIVATE_STORAGE")
    if isinstance(named, str) and named:
        if named not in settings.STORAGES:
            return []  # E002 says so
        alias = named
    elif SITE_ALIAS in settings.STORAGES:
        alias = SITE_ALIAS
    else:
        if settings.DEBUG:
            return []
        return [
            Warning(
                "No private storage is configured: the app keeps report bodies and readers' "
                f"PDFs in {fallback_location()}, on this host only.",
                hint=f"Define settings.STORAGES[{SITE_ALIAS!r}] (e.g. backpain_report."
                "privatestorage.PrivateStorage with a location) on storage every web and worker "
                "host shares, or name an alias in PRIVATE_STORAGE.",
                id="backpain_report.W006",
            )
        ]
    reason = _public_reason(alias)
    if reason is None:
        return []
    return [
        Warning(
            f"The private storage {alias!r}, which holds readers' PDFs with their names, looks "
            f"public: {reason}.",
            hint=f"Use a storage without URLs outside MEDIA_ROOT, e.g. STORAGES[{SITE_ALIAS!r}] "
            '= {"BACKEND": "backpain_report.privatestorage.PrivateStorage", '
            '"OPTIONS": {"location": "/srv/yoursite/private"}}.',
            id="backpain_report.W005",
        )
    ]
