"""Logging defaults: WeasyPrint's and fontTools' per-render chatter off, unless the site asks.

WeasyPrint logs seven "Step 1 - Fetching and parsing HTML ..." lines per render at INFO on
``weasyprint.progress``, and fontTools logs its font subsetting on ``fontTools.*``: a worker run
at INFO (``celery worker -l info``) drowned its own lines in them. At start-up the app sets those
loggers to WARNING, but only where the site said nothing about them: a logger (or a parent other
than the root) named in ``settings.LOGGING["loggers"]``, or given a level in code before the app
is ready, is left as the site has it. WeasyPrint's own warnings and errors (``weasyprint``: a
missing image, bad CSS) are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

#: The loggers quieted to WARNING by default.
CHATTY_LOGGERS = ("weasyprint.progress", "fontTools")


def _site_configured(name: str, configured: Mapping[str, Any]) -> bool:
    """Whether ``name`` or one of its parents is in the site's ``LOGGING["loggers"]``."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in configured for i in range(1, len(parts) + 1))


def loggers_quiet(logging_setting: Any) -> list[str]:
    """Set the chatty loggers the site left alone to WARNING; return the names set.

    ``logging_setting`` is the site's ``settings.LOGGING`` (any value: a dict config or not).
    """
    configured = logging_setting.get("loggers", {}) if isinstance(logging_setting, dict) else {}
    if not isinstance(configured, Mapping):
        configured = {}
    quieted = []
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level != logging.NOTSET or _site_configured(name, configured):
            continue
        logger.setLevel(logging.WARNING)
        quieted.append(name)
    return quieted
