"""The offer at the top of the article page: heading, the report's cover and what is inside.

Everything here is the same for every reader of an edition: the section titles are read from
the report's body once per (report, edition, last change) and process, so the article page
(whose selector defers the report's body) costs no query for them after the first view.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from django.urls import reverse
from django.utils.functional import Promise

from ..conf import DEFAULTS, app_settings
from ..models import Report

#: How many section titles the offer lists (the issue asks for 3 to 5).
HIGHLIGHTS = 5
# Sections that introduce the report rather than say what it gives the reader.
_INTRODUCTORY = re.compile(r"^(about|introduction|contents|foreword)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Offer:
    """What the offer block shows for one report edition."""

    heading: str
    title: str
    subtitle: str
    cover_url: str
    highlights: tuple[str, ...]


@functools.lru_cache(maxsize=64)
def _section_titles(pk: int, edition: int, changed: object) -> tuple[str, ...]:
    from ..report.pdf import body_to_html, report_sections  # WeasyPrint: imported where used

    body = Report.objects.filter(pk=pk).values_list("body", flat=True).first() or ""
    return tuple(title for _anchor, title in report_sections(body_to_html(body)))


def report_highlights(report: Report, *, limit: int = HIGHLIGHTS) -> tuple[str, ...]:
    """Up to ``limit`` of the report's section titles (level-2 headings), introductions left
    out: the "What's inside" list. Cached per edition and change, so ``report.body`` may be
    deferred."""
    titles = _section_titles(report.pk, report.edition, report.updated_at)
    return tuple(title for title in titles if not _INTRODUCTORY.match(title))[:limit]


def offer_heading() -> str:
    """``OFFER_HEADING``, or its default when it is blank (check E010): never an empty heading."""
    heading = app_settings.OFFER_HEADING
    if isinstance(heading, (str, Promise)) and str(heading).strip():
        return str(heading)  # in the active language when it is a gettext_lazy() text
    return str(DEFAULTS["OFFER_HEADING"])


def cover_path(report: Report) -> str:
    """The URL path of the report's cover PNG for its current edition."""
    return reverse(
        "backpain_report:report_cover", kwargs={"slug": report.slug, "edition": report.edition}
    )


def cover_path_is_current(request_path: str, report: Report) -> bool:
    """Whether ``request_path`` (``request.path``: decoded, with the script name) is the
    current edition's cover path. :func:`cover_path` is percent-encoded, as ``reverse()``
    returns it, so it is decoded before the two are compared: under an include or a script
    name with a space or a non-ASCII character they differ only in encoding."""
    return request_path == unquote(cover_path(report))


def report_offer(report: Report) -> Offer:
    """The offer block's content for ``report``."""
    return Offer(
        heading=offer_heading(),
        title=report.title,
        subtitle=report.subtitle,
        cover_url=cover_path(report),
        highlights=report_highlights(report),
    )
