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
# What makes a name carry a link or an address (matched on the probe of _address_probe):
_ADDRESS_IN_NAME = re.compile(
    r"@|http|www\.|://"  # an email address, a URL or a scheme
    r"|[^\W_]\.[^\W_]{2}"  # a dotted host, "evil.example", "bit.ly/x"; not "J.R.R. Tolkien"
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address
)
# Full stops that IDNA and browsers read as a host's dot and NFKC leaves alone.
_IDEOGRAPHIC_DOTS = str.maketrans({"\u3002": ".", "\uff61": "."})
_SPACED_DOT = re.compile(r"\s+\.\s*")


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
    """Validate an address typed by a reader and return it trimmed.

    Both the address and its :func:`canonical_email` form must fit ``MAX_EMAIL_LENGTH``, the
    length of the columns that store them.
    """
    value = (value or "").strip()
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError(
            _("An email address has at most %(max)d characters.") % {"max": MAX_EMAIL_LENGTH},
            code="max_length",
        )
    if _UNSAFE_CHARS.search(value):
        raise ValidationError(_("Enter a valid email address."), code="invalid")
    validate_email(value)
    canonical = canonical_email(value)
    if len(canonical) > MAX_EMAIL_LENGTH:
        # A Unicode domain grows when IDNA-encoded ("ü" is "xn--tda"), and a local part may
        # grow when its case is folded ("İ" is two characters in lower case): the canonical
        # form is stored too, in a column of the same length.
        raise ValidationError(
            _(
                "An email address has at most %(max)d characters. In the form we store (the "
                "domain IDNA-encoded, in lower case) this one has %(length)d."
            )
            % {"max": MAX_EMAIL_LENGTH, "length": len(canonical)},
            code="max_length",
        )
    return value


def _address_probe(name: str) -> str:
    """``name`` as a mail client's link finder may read it: compatibility forms folded (NFKC:
    fullwidth letters, at sign and full stop), invisible format characters dropped, ideographic full
    stops made dots, spaces before a dot closed up ("evil . example"), case folded."""
    text = unicodedata.normalize("NFKC", name).translate(_IDEOGRAPHIC_DOTS)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    return _SPACED_DOT.sub(".", text).casefold()


def name_has_address(name: str) -> bool:
    """Whether ``name`` holds a URL, a host name or an email address (``www.``, ``http``,
    ``@``, ``evil.example``, ``bit.ly/x``), so it could carry someone else's link into an email.

    A dot followed by a space or by a single letter is a name's dot: "J. R. R. Tolkien",
    "J.R.R. Tolkien", "St. John". A dot between two words ("Ann.Lee") reads as a host.
    """
    return bool(_ADDRESS_IN_NAME.search(_address_probe(name)))


def clean_name(value: str) -> str:
    """Normalise a reader's name: NFC, control characters removed, spaces collapsed, bounded;
    a name holding a web or email address (:func:`name_has_address`) or a number
    (:func:`name_has_number`) is refused."""
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
    if name_has_address(value):
        raise ValidationError(
            _("Please enter just your name — no web or email addresses."), code="address"
        )
    if name_has_number(value):
        # A phone number is the one call to action left once links and addresses are refused:
        # with single opt-in the name reaches an unconfirmed address (greeting, PDF cover).
        raise ValidationError(_("Please enter just your name — no numbers."), code="digits")
    return value


def name_has_number(name: str) -> bool:
    """Whether ``name`` holds a number in any form: a character of a Unicode number category
    (``Nd`` digits in any script, fullwidth and mathematical ones included; ``Nl`` letter
    numbers such as "Ⅻ"; ``No`` such as "⑤", "⁵", "⒌", "⑴", "¼"), also once compatibility
    forms are folded (NFKC: "㏩" is "10日"). Ideographs with a numeric value ("三郎") are
    letters and pass."""
    folded = unicodedata.normalize("NFKC", name)
    return any(unicodedata.category(char)[0] == "N" for char in name + folded)


def email_masked(address: str) -> str:
    """An address as shown in logs and command output: ``m…@example.com`` (``…@x.com`` for
    ``a@x.com``: a one-letter local part shown would be the whole address)."""
    local, _sep, domain = address.rpartition("@")
    shown = local[:1] if len(local) > 1 else ""
    return f"{shown}…@{domain}" if local else "…"
