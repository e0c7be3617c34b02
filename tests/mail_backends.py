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
