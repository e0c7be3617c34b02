"""Render the free report to PDF bytes. Knows templates and WeasyPrint, never the database.

The report body (Markdown) is rendered and sanitised by :mod:`backpain_report.markup`, placed in
an ordinary Django template (overridable by the site, see :data:`REPORT_TEMPLATE`) and laid out by
WeasyPrint. The renderer may read files inside this package (the template's stylesheet, fonts,
images) and nothing else: every other URL, local or remote, is refused, so neither a reader's
name nor an edited template can make the renderer touch the network or the file system.
"""

from __future__ import annotations

import datetime
import html
import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from django.template.loader import render_to_string
from weasyprint import HTML
from weasyprint.urls import URLFetcher, path2url

from .markup import render_markdown

REPORT_TEMPLATE = "backpain_report/report/report.html"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_KEYWORDS = ("back pain", "muscle spasms", "erector spinae", "posture", "home care")

_H2_RE = re.compile(r'<h2 id="([^"]+)">(.*?)</h2>', re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")


class ReportLike(Protocol):
    """What the renderer needs from a report (a ``Report`` row or any stand-in object)."""

    title: str
    subtitle: str
    slug: str
    edition: int
    author: str
    body: str


class PackageOnlyURLFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that serves files inside this package and refuses all else."""

    def __init__(self, root: Path = PACKAGE_DIR, **kwargs: Any) -> None:
        super().__init__(allowed_protocols={"file"}, allow_redirects=False, **kwargs)
        self.root = root.resolve()

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> Any:
        """Fetch ``url`` if it is a ``file:`` URL of a file under :attr:`root`, else raise."""
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"URL refused by the report renderer: {url[:200]!r}")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise ValueError(f"File outside the package refused: {url[:200]!r}")
        return super().fetch(path2url(str(path)), headers)


def report_sections(body_html: str) -> list[tuple[str, str]]:
    """The ``(id, title)`` of every level-2 heading in ``body_html``, for the contents page."""
    return [
        (anchor, html.unescape(_TAG_RE.sub("", title)).strip())
        for anchor, title in _H2_RE.findall(body_html)
    ]


def render_report_html(*, report: ReportLike, reader_name: str, prepared_on: datetime.date) -> str:
    """The report's HTML, from ``report.template_name`` (default :data:`REPORT_TEMPLATE`)."""
    body_html = render_markdown(report.body)
    context = {
        "report": report,
        "reader_name": reader_name,
        "prepared_on": prepared_on,
        "body_html": body_html,
        "sections": report_sections(body_html),
    }
    template_name = getattr(report, "template_name", "") or REPORT_TEMPLATE
    return render_to_string(template_name, context)


def render_report_pdf(*, report: ReportLike, reader_name: str, prepared_on: datetime.date) -> bytes:
    """Render ``report`` personalised for ``reader_name`` and return the PDF file's bytes.

    ``report`` is any object with ``title``, ``subtitle``, ``slug``, ``edition``, ``author``,
    ``body`` (Markdown) and optionally ``template_name`` and ``keywords``. The reader's name
    is escaped by the template like any other text. The PDF carries title, author, subject,
    keywords and language metadata, and bookmarks from the template's headings.
    """
    source = render_report_html(report=report, reader_name=reader_name, prepared_on=prepared_on)
    document = HTML(
        string=source,
        base_url=path2url(str(PACKAGE_DIR)) + "/",
        url_fetcher=PackageOnlyURLFetcher(),
        media_type="print",
    ).render()
    metadata = document.metadata
    metadata.title = report.title
    metadata.authors = [report.author] if report.author else []
    metadata.description = report.subtitle or metadata.description
    keywords = getattr(report, "keywords", None) or DEFAULT_KEYWORDS
    if isinstance(keywords, str):
        keywords = keywords.split(",")
    metadata.keywords = [word.strip() for word in keywords if word.strip()]
    metadata.lang = "en"
    metadata.created = metadata.modified = prepared_on.isoformat()
    metadata.generator = "backpain_report"
    return document.write_pdf()
