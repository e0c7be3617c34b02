"""Email address and name hygiene for everything a reader types into the form."""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 100
# Control characters, line/paragraph separators and bidirectional overrides.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def canonical_email(address: str) -> str:
    """The form used to recognise a returning reader: trimmed, domain lowercased and IDNA-encoded.

    The local part is kept as typed apart from case: most providers treat it case-insensitively,
    and folding it means ``Ann@x.com`` and ``ann@x.com`` are one subscriber. Dots and ``+tags``
    are kept, because they are significant at many providers.
    """
    local, _sep, domain = address.strip().rpartition("@")
    try:
        domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValidationError(_("Enter a valid email address."), code="invalid") from exc
    return f"{local.lower()}@{domain}"


def clean_email(value: str) -> str:
    """Validate an address typed by a reader and return it trimmed."""
    value = (value or "").strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            _("An email address has at most %(max)d characters.") % {"max": MAX_EMAIL_LENGTH},
            code="max_length",
        )
    if _UNSAFE_CHARS.search(value):
        raise ValidationError(_("Enter a valid email address."), code="invalid")
    validate_email(value)
    canonical_email(value)
    return value


def clean_name(value: str) -> str:
    """Normalise a reader's name: NFC, control characters removed, spaces collapsed, bounded."""
    value = unicodedata.normalize("NFC", value or "")
    value = _UNSAFE_CHARS.sub(" ", value)
    value = " ".join(value.split())
    if not value:
        raise ValidationError(_("Please tell us your name."), code="required")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(
            _("A name has at most %(max)d characters.") % {"max": MAX_NAME_LENGTH},
            code="max_length",
        )
    return value


def email_masked(address: str) -> str:
    """An address as shown in logs and command output: ``m…@example.com``."""
    local, _sep, domain = address.rpartition("@")
    return f"{local[:1]}…@{domain}" if local else "…"
