"""Email headers written the same on every Django: raw when ASCII, RFC 2047 only for text.

Python's email package folds long header lines, and a line it cannot fold at whitespace (a long
``List-Unsubscribe`` URL) it turns into RFC 2047 encoded-words (``=?utf-8?q?=3Chttps=3A//…?=``),
which RFC 2369 readers do not decode. A :class:`RawHeader` goes out as ``Name: value`` on one
line, which RFC 5322 allows up to 998 characters. A :class:`TextHeader` (the subject) is folded
and encoded as the modern email API does it, also where Django < 6.1 builds ``compat32``
messages (whose folder starts a long subject on a line of its own).
"""

from __future__ import annotations

import email.policy
from email.policy import Compat32, EmailPolicy
from typing import Any

# RFC 5322 2.1.1: a line MUST NOT be longer than 998 characters (without its CRLF).
MAX_LINE_LENGTH = 998


class _SelfFoldingHeader(str):
    """A header value (a str) that writes its own header line.

    The modern API (``email.policy.EmailPolicy``, used by Django 6.1) keeps a value that has a
    ``name`` as it is and asks it to ``fold(policy=...)`` itself; the legacy one (``compat32``,
    Django 5.2) does so once the message has :data:`SELF_FOLDING_COMPAT32` as its policy.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _SelfFoldingHeader:
        if "\r" in value or "\n" in value:
            raise ValueError(f"The {name} header must be one line.")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Any) -> str:
        raise NotImplementedError


class RawHeader(_SelfFoldingHeader):
    """ASCII written verbatim on one line: never encoded, never folded."""

    def __new__(cls, name: str, value: str) -> RawHeader:
        if not value.isascii():
            raise ValueError(f"The {name} header must be ASCII.")
        if len(name) + 2 + len(value) > MAX_LINE_LENGTH:
            raise ValueError(f"The {name} header is longer than {MAX_LINE_LENGTH} characters.")
        return super().__new__(cls, name, value)  # type: ignore[return-value]

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self!s}{policy.linesep}"


class TextHeader(_SelfFoldingHeader):
    """Unstructured text, folded at whitespace with only its non-ASCII words RFC 2047 encoded."""

    def fold(self, *, policy: Any) -> str:
        if not isinstance(policy, EmailPolicy):
            policy = email.policy.SMTP.clone(linesep=policy.linesep)
        return policy.header_factory(self.name, str(self)).fold(policy=policy)


class _SelfFoldingCompat32(Compat32):
    """``compat32``, except that a header value may write its own line."""

    def fold(self, name: str, value: Any) -> str:
        if isinstance(value, _SelfFoldingHeader):
            return value.fold(policy=self)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, _SelfFoldingHeader):
            return value.fold(policy=self).encode("ascii")
        return super().fold_binary(name, value)


SELF_FOLDING_COMPAT32 = _SelfFoldingCompat32()


def headers_replace(message: Any, *, raw: dict[str, str], text: dict[str, str]) -> None:
    """Replace headers of a built ``email`` message: ``raw`` ones verbatim, ``text`` encoded."""
    if isinstance(message.policy, Compat32) and not isinstance(
        message.policy, _SelfFoldingCompat32
    ):
        message.policy = SELF_FOLDING_COMPAT32  # Django < 6.1 builds compat32 messages
    for name, value in raw.items():
        message.replace_header(name, RawHeader(name, value))
    for name, value in text.items():
        message.replace_header(name, TextHeader(name, value))
