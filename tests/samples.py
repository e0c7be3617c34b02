"""Stand-ins shared by the PDF tests: a report-like object needing no database."""

import re
import time
import types
from pathlib import Path

from backpain_report.report.pdf import REPORT_TEMPLATE

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "backpain_report"


def make_report(**overrides: object) -> types.SimpleNamespace:
    """The bundled report's text as an object with a Report's attributes (``pk`` included)."""
    values: dict[str, object] = {
        "pk": 7,
        "title": "Back Pain Muscle Spasms",
        "subtitle": "A practical guide to easing the pain and keeping it from coming back",
        "slug": "back-pain-muscle-spasms",
        "edition": 3,
        "author": "The Back Pain Report team",
        "body": (PACKAGE_DIR / "seed" / "report.md").read_text(encoding="utf-8"),
        "template_name": REPORT_TEMPLATE,
    }
    values.update(overrides)
    return types.SimpleNamespace(**values)


def reader_name(n: int, prefix: str = "Reader") -> str:
    """A valid, distinct reader name for the n-th of many sign-ups (names may hold no digit)."""
    letters = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{prefix} {letters}"


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true (True) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def hidden(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in ``html`` (it must be there)."""
    match = re.search(rf'<input type="hidden" name="{name}"([^>]*)>', html)
    assert match, f"no hidden {name}"
    value = re.search(r'value="([^"]*)"', match.group(1))
    return value.group(1) if value else ""


def followup_signup(client, article, **extra):
    """POST the sign-up form for Ann on ``article`` (``extra``: more or other fields)."""
    from django.urls import reverse

    data = {"name": "Ann", "email": "ann@example.com", "consent": "on", **extra}
    data["article"] = article.slug
    return client.post(reverse("backpain_report:signup"), data)
