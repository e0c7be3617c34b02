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

from typing import Any

from django.core import mail
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

from ..conf import app_settings
from ..config.timing import (  # noqa: F401  (RENDER_BUDGET, ...: this module's API too)
    RENDER_BUDGET,
    SMTP_WAITS_PER_MESSAGE,
    lease_mail_timeout,
    mailer_timeout,
    send_time_bound,
)


def mail_timeout() -> float | None:
    """The timeout configured for the mailer the app sends through (seconds), or None."""
    return mailer_timeout(app_settings.MAILER)


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
