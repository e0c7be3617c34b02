"""The one adapter between the app and Django's mail machinery.

Django 6.1 introduced named mailers (``settings.MAILERS``, ``django.core.mail.mailers``) and
deprecated ``get_connection()``; older versions only have ``get_connection()``. Everything that
sends goes through :func:`open_mailer`, which uses whichever the running Django prefers.
"""

from __future__ import annotations

from typing import Any

from django.core import mail

from .conf import app_settings


def open_mailer() -> Any:
    """Return an email backend (a connection) to send through; open/close it around a batch."""
    mailers = getattr(mail, "mailers", None)
    alias = app_settings.MAILER
    if mailers is not None:
        return mailers[alias] if alias else mailers.default
    return mail.get_connection()
