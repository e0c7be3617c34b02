"""A mail backend whose answers a test scripts: raise an error for the next N sends, etc."""

from __future__ import annotations

from collections import deque

from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend

# Exceptions to raise on the next sends, in order; empty means "accept".
scripted_failures: deque[BaseException] = deque()


class ScriptedBackend(LocmemBackend):
    def send_messages(self, messages):
        if scripted_failures:
            raise scripted_failures.popleft()
        return super().send_messages(messages)


__all__ = ["ScriptedBackend", "mail", "scripted_failures"]


class CountingSMTPBackend(SMTPBackend):
    """Django's SMTP backend, counting the connections it actually opens."""

    connections_opened = 0

    def open(self):
        opened = super().open()
        if opened:
            type(self).connections_opened += 1
        return opened


SMTP = "django.core.mail.backends.smtp.EmailBackend"


def smtp_configure(
    settings,
    *,
    port: int | None = None,
    timeout: float | None = None,
    backend: str = SMTP,
    host: str = "127.0.0.1",
) -> None:
    """Point the default mailer at an SMTP server, where the running Django reads it: MAILERS
    on 6.1+, the EMAIL_* settings before (``timeout`` None: no timeout)."""
    import django

    if django.VERSION >= (6, 1):
        options: dict = {"host": host}
        if port is not None:
            options["port"] = port
        if timeout is not None:
            options["timeout"] = timeout
        settings.MAILERS = {"default": {"BACKEND": backend, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_TIMEOUT = backend, host, timeout
        if port is not None:
            settings.EMAIL_PORT = port
