"""Where the app's private files go when the site names no storage for them.

Plain values, importing nothing of the app: :mod:`backpain_report.report.privatestorage` uses
them, the system checks (``W`` on a fallback directory, ``E015``) name them.
"""

from __future__ import annotations

import os
import tempfile

#: The ``STORAGES`` alias the app uses when the site defines one.
SITE_ALIAS = "backpain_report"


def fallback_location() -> str:
    """``<temp dir>/backpain_report-<uid>``: the app's own directory when the site names none."""
    owner = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"backpain_report-{owner}")
