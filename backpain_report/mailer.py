"""The one adapter between the app and Django's mail machinery.

Django 6.1 introduced named mailers (``settings.MAILERS``, ``django.core.mail.mailers``) and
deprecated ``get_connection()``; older versions only have ``get_connection()``. Everything that
sends goes through :func:`open_mailer`, which uses whichever the running Django prefers.

It also keeps an SMTP server that stops answering from holding a delivery's claim past the lease:
Django's SMTP backend waits without limit unless a timeout is configured, so when none is,
:func:`open_mailer` gives it one that fits in ``CLAIM_LEASE`` (:func:`lease_mail_timeout`).
System check ``E004`` reports a configured timeout too long for the lease. The timeout is a
socket timeout: it bounds each wait for the server (one read, or over TLS one chunk written), not
a whole SMTP step, so a server that answers a few bytes at a time is not bounded by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from .conf import app_settings

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


def mail_timeout() -> float | None:
    """The timeout configured for the mailer the app sends through (seconds), or None.

    Django 6.1+ with ``MAILERS``: the chosen mailer's ``OPTIONS["timeout"]``; otherwise
    ``EMAIL_TIMEOUT``.
    """
    if getattr(mail, "mailers", None) is not None and hasattr(settings, "MAILERS"):
        # Any shape (a check may run on settings Django has not validated yet): no timeout.
        mailers = settings.MAILERS
        alias = app_settings.MAILER if isinstance(app_settings.MAILER, str) else "default"
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


def open_mailer() -> Any:
    """Return an email backend (a connection) to send through; open/close it around a batch.

    An SMTP backend without a timeout gets :func:`lease_mail_timeout` of ``CLAIM_LEASE``.
    """
    mailers = getattr(mail, "mailers", None)
    alias = app_settings.MAILER
    if mailers is not None:
        backend = mailers[alias] if alias else mailers.default
    else:
        backend = mail.get_connection()
    if isinstance(backend, SMTPBackend) and backend.timeout is None:
        backend.timeout = lease_mail_timeout(float(app_settings.CLAIM_LEASE))
    return backend
