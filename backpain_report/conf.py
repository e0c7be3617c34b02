"""The app's settings: one ``BACKPAIN_REPORT`` dict merged over the defaults.

Each key is declared once, with its default, type, validator and doc line, in
``config/schema.py``; this module reads the values.

Read every value through :func:`get` (or ``app_settings.KEY``) at call time, never at import
time, so ``override_settings`` works. The merged dict is cached and the cache is dropped
whenever Django's ``setting_changed`` signal names ``BACKPAIN_REPORT``.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .config.schema import BY_NAME, SETTING_NAME, SETTINGS

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}
"""Each key's default, from the schema in config/schema.py (its one declaration)."""


@cache
def _merged() -> dict[str, Any]:
    user = getattr(settings, SETTING_NAME, {}) or {}
    return {**DEFAULTS, **user}


def get(key: str) -> Any:
    """Return the current value of one app setting."""
    if key not in DEFAULTS:
        raise KeyError(f"{SETTING_NAME} has no key {key!r}")
    return _merged()[key]


def checked(key: str) -> Any:
    """The value of ``key``, or its default when the system check would refuse it (wrong type,
    or its validator says no): a process that never ran the checks, a Celery worker say, still
    uses a value that works. The refusal is logged as an error each time."""
    value, setting = get(key), BY_NAME[key]
    problem = (None if setting.accepts(value) else "has the wrong type") or (
        setting.validate(value) if setting.validate else None
    )
    if problem is None:
        return value
    logger.error(
        "%s[%r] %s; using the default (see the system checks).", SETTING_NAME, key, problem
    )
    return setting.default


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
