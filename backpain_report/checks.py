"""System checks for the ``BACKPAIN_REPORT`` setting and what the app needs from the site.

- ``backpain_report.E002``: ``BACKPAIN_REPORT`` is not a dict, has an unknown key or a value of
  the wrong type.
- ``backpain_report.E001`` and ``E007`` to ``E023``: a value of the right type that its
  setting's validator refuses (``FROM_EMAIL`` missing, ``SITE_URL`` not an origin, ...), one id
  per kind of problem, each declared with its setting in ``config/schema.py`` (the docs'
  "System checks" table says what each one means).
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

from django.apps import apps
from django.conf import settings
from django.core import mail
from django.core.checks import Error, Tags, Warning, register
from django.core.files.storage import FileSystemStorage, storages

from .conf import SETTING_NAME, app_settings, user_settings
from .config.schema import BY_NAME, SETTINGS, Setting
from .config.storage import SITE_ALIAS, fallback_location
from .config.timing import (
    RENDER_BUDGET,
    SMTP_WAITS_PER_MESSAGE,
    lease_mail_timeout,
    mailer_timeout,
    send_time_bound,
)

REQUIRED_APPS = ["crispy_forms", "crispy_bootstrap5"]


def _wrong_type(config: dict, name: str) -> bool:
    """Whether the site set ``name`` to a value of the wrong type (E002 says so)."""
    return name in config and not BY_NAME[name].accepts(config[name])


def _check_keys_and_types(config: dict) -> list:
    """E002 for every unknown key and every value of the wrong type."""
    errors = []
    for key, value in config.items():
        if key not in BY_NAME:
            errors.append(
                Error(f"{SETTING_NAME} has an unknown key {key!r}.", id="backpain_report.E002")
            )
        elif not BY_NAME[key].accepts(value):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] has the wrong type: {type(value).__name__}.",
                    id="backpain_report.E002",
                )
            )
    return errors


def _check_value(setting: Setting, config: dict) -> list:
    """The setting's own check id when its validator refuses its value (the site's, else the
    default); nothing for a value of the wrong type, which is E002 alone."""
    if setting.validate is None or _wrong_type(config, setting.name):
        return []
    problem = setting.validate(config.get(setting.name, setting.default))
    if problem is None:
        return []
    return [
        Error(
            f"{SETTING_NAME}[{setting.name!r}] {problem}.",
            hint=setting.problem_hint(),
            id=setting.check_id,
        )
    ]


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    errors: list = []
    raw = getattr(settings, SETTING_NAME, None)
    if raw is not None and not isinstance(raw, dict):
        return [Error(f"{SETTING_NAME} must be a dict.", id="backpain_report.E002")]
    config = user_settings()
    errors.extend(_check_keys_and_types(config))
    for setting in SETTINGS:
        errors.extend(_check_value(setting, config))
    for app in REQUIRED_APPS:
        if not apps.is_installed(app):
            errors.append(
                Error(
                    f"backpain_report needs {app!r} in INSTALLED_APPS.",
                    id="backpain_report.E003",
                )
            )
    errors.extend(_check_site_url(config))
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
    errors.extend(_check_throttle_cache(config))
    errors.extend(_check_claim_lease(config))
    errors.extend(_check_private_storage(config))
    errors.extend(_check_privacy_url(config))
    return errors


def _check_privacy_url(config: dict) -> list:
    """W007 when PRIVACY_URL is unset in production (readers are asked to consent with no
    privacy notice to read); a value that is set is its validator's (E008) or E002's."""
    if config.get("PRIVACY_URL") or settings.DEBUG:
        return []
    return [
        Warning(
            f"{SETTING_NAME}['PRIVACY_URL'] is not set: the consent checkbox and the emails "
            "link to no privacy notice.",
            hint='Set it to your privacy notice, e.g. "/privacy/" or "https://www.example.com/'
            'privacy/".',
            id="backpain_report.W007",
        )
    ]


def _check_site_url(config: dict) -> list:
    """Without SITE_URL links in emails follow the request's Host header: fine on a developer's
    machine, an error in production (a forged Host would pick the links' host). A SITE_URL
    that is set is its validator's (E007) or E002's."""
    if config.get("SITE_URL"):
        return []
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
    if _wrong_type(config, "CLAIM_LEASE"):
        return []  # E002 says so
    lease = config.get("CLAIM_LEASE", BY_NAME["CLAIM_LEASE"].default)
    configured = mailer_timeout(app_settings.MAILER)
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
    alias = config.get("THROTTLE_CACHE", BY_NAME["THROTTLE_CACHE"].default)
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
    except Exception:  # noqa: BLE001 - a missing alias is E015, a broken one fails elsewhere
        return None
    base_url = getattr(storage, "base_url", None)
    if base_url:
        return f"it has a base_url ({base_url!r}), so its files have public URLs"
    if isinstance(storage, FileSystemStorage):
        for root in ("MEDIA_ROOT", "STATIC_ROOT"):
            if _inside(storage.location, getattr(settings, root, None)):
                return f"its directory is inside {root}"
    return None


def _check_private_storage(config: dict) -> list:
    named = config.get("PRIVATE_STORAGE")
    if isinstance(named, str) and named:
        if named not in settings.STORAGES:
            return []  # E015 says so
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
            '= {"BACKEND": "backpain_report.report.privatestorage.PrivateStorage", '
            '"OPTIONS": {"location": "/srv/yoursite/private"}}.',
            id="backpain_report.W005",
        )
    ]
