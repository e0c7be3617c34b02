"""How long sending one email may take: the budgets the claim's lease is sized by.

Pure functions of Django's settings (``EMAIL_TIMEOUT``, ``MAILERS``) and of values passed in:
:mod:`backpain_report.delivery.mailer` applies them, the system checks (``E004``) compare them
with ``CLAIM_LEASE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

from django.conf import settings
from django.core import mail

# Seconds a full render of one report may take, for sizing the lease. Measured: about 1 s (median
# 0.7 s, p90 0.9 s, an edition's first report 1.2 s with `backpain_bench` on a 2 vCPU machine);
# the budget leaves ample room for a loaded worker.
RENDER_BUDGET = 60.0
# Replies the client waits for while handing one message to the server over an open connection:
# EHLO (first message only), MAIL FROM, RCPT TO, DATA, the data itself and the final reply. Each
# is bounded by the timeout only while the server sends nothing: every byte it sends restarts the
# socket timeout. The connection is opened before the claim is re-checked, so its handshake does
# not count.
SMTP_WAITS_PER_MESSAGE = 6


def mailer_timeout(mailer: object) -> float | None:
    """The timeout configured for the mailer the app sends through (seconds), or None.

    Django 6.1+ with ``MAILERS``: the ``OPTIONS["timeout"]`` of ``mailer`` (the ``MAILER``
    setting: an alias, else the default one); otherwise ``EMAIL_TIMEOUT``.
    """
    if getattr(mail, "mailers", None) is not None and hasattr(settings, "MAILERS"):
        # Any shape (a check may run on settings Django has not validated yet): no timeout.
        mailers = settings.MAILERS
        alias = mailer if isinstance(mailer, str) else "default"
        config = (mailers.get(alias) if isinstance(mailers, Mapping) else None) or {}
        options: Any = (config.get("OPTIONS") if isinstance(config, Mapping) else None) or {}
        timeout = options.get("timeout") if isinstance(options, Mapping) else None
    else:
        timeout = getattr(settings, "EMAIL_TIMEOUT", None)
    if isinstance(timeout, Real) and not isinstance(timeout, bool):
        return float(timeout)
    return None


def lease_mail_timeout(lease: float) -> float:
    """The SMTP timeout that fits a lease: what a render leaves, shared by the waits (>= 1 s).

    90 s with the default ``CLAIM_LEASE`` of 600 s.
    """
    return max(1.0, (lease - RENDER_BUDGET) / SMTP_WAITS_PER_MESSAGE)


def send_time_bound(timeout: float) -> float:
    """Longest a claimed delivery may take to render and be handed to the server."""
    return RENDER_BUDGET + SMTP_WAITS_PER_MESSAGE * timeout
