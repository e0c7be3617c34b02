"""Render the free report to PDF bytes. Knows templates and WeasyPrint, never the database.

The report body (Markdown) is rendered and sanitised by :mod:`backpain_report.report.markup`, placed
in an ordinary Django template (overridable by the site, see :data:`REPORT_TEMPLATE`) and laid out
by WeasyPrint. The renderer may read files inside this package (the template's stylesheet, the
bundled fonts in ``fonts/``, images) and nothing else: every other URL, local or remote, is refused,
so neither a reader's name nor an edited template can make the renderer touch the network or the
file system.

The PDF is tagged (``pdf_tags``) and carries title, author, subject, keywords, language and
bookmarks. :func:`render_report_pdf` renders the whole report for one reader;
:mod:`backpain_report.report.pdfcache` renders the body once per edition and only the cover per
reader.
"""

from __future__ import annotations

import datetime
import functools
import html
import re
import ssl
import threading
import unicodedata
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.translation import get_language, gettext_lazy
from weasyprint import CSS, HTML, Document
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, path2url

from .markup import render_markdown

REPORT_TEMPLATE = "backpain_report/report/report.html"
REPORT_CSS = "backpain_report/report/report.css"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the package's own files
_BASE_URL = path2url(str(PACKAGE_DIR)) + "/"
FONTS_DIR = PACKAGE_DIR / "fonts"
#: The PDF's keywords when the report has none (in the language the report is rendered in).
DEFAULT_KEYWORDS = (
    gettext_lazy("back pain"),
    gettext_lazy("muscle spasms"),
    gettext_lazy("erector spinae"),
    gettext_lazy("posture"),
    gettext_lazy("home care"),
)
#: Options given to WeasyPrint for every render: a tagged (structured, accessible) PDF.
PDF_OPTIONS: dict[str, Any] = {"pdf_tags": True}

#: The most code points the cover lets join into one unbreakable unit after a base character:
#: a family emoji or a flag's tag sequence has fewer; a longer run (100 halfwidth sound marks,
#: emoji chained by joiners, Hangul jamo) is given break opportunities.
MAX_JOINED = 8
#: The most combining marks the cover stacks on one character (Vietnamese, Thai and Tibetan
#: names need up to three); more would rise out of the name's line into the text above.
MAX_MARKS = 3
_ZWSP = "\u200b"  # a break opportunity, invisible

_thread = threading.local()
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
        # HTTPS is refused anyway: a bare TLS context spares loading the system's CA
        # certificates (~25 ms) on every render.
        kwargs.setdefault("ssl_context", _unused_tls_context())
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


@functools.cache
def _unused_tls_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def body_to_html(body: str) -> SafeString:
    """``render_markdown(body)`` (remembered there: a report renders many times per edition)."""
    return render_markdown(body)


def report_sections(body_html: str) -> list[tuple[str, str]]:
    """The ``(id, title)`` of every level-2 heading in ``body_html``, for the contents page."""
    return [
        (anchor, html.unescape(_TAG_RE.sub("", title)).strip())
        for anchor, title in _H2_RE.findall(body_html)
    ]


def _is_jamo(char: str) -> bool:
    code = ord(char)
    return 0x1100 <= code <= 0x11FF or 0xA960 <= code <= 0xA97F or 0xD7B0 <= code <= 0xD7FF


def _joins_previous(char: str, previous: str) -> bool:
    """Whether a line may not break between ``previous`` and ``char`` (they are one grapheme
    cluster, or nearly): a mark, a format character (joiners, tags, prepended marks) or what
    follows one, a halfwidth sound mark, a skin tone, a Hangul jamo after a jamo or syllable."""
    if unicodedata.category(char)[0] == "M" or unicodedata.category(char) == "Cf":
        return True
    if previous and unicodedata.category(previous) == "Cf":
        return True
    code = ord(char)
    if 0xFF9E <= code <= 0xFF9F or 0x1F3FB <= code <= 0x1F3FF:
        return True
    return (
        _is_jamo(char)
        and bool(previous)
        and (_is_jamo(previous) or "\uac00" <= previous <= "\ud7a3")
    )


def reader_name_breakable(name: str) -> str:
    """``name`` as the cover shows it: an invisible break opportunity in every run of more
    than :data:`MAX_JOINED` joined code points, so that no unit the line breaker cannot split
    is wider than the cover (``overflow-wrap: anywhere`` breaks between grapheme clusters only,
    and 100 halfwidth sound marks are one), and no more than :data:`MAX_MARKS` combining marks
    in a row. Names of real scripts are left as they are."""
    out: list[str] = []
    run = marks = 0
    previous = ""
    for char in name:
        is_mark = unicodedata.category(char)[0] == "M"
        marks = marks + 1 if is_mark else 0
        if is_mark and marks > MAX_MARKS:
            continue  # stacked higher than a line: left off the cover
        if _joins_previous(char, previous):
            run += 1
            if run > MAX_JOINED:
                out.append(_ZWSP)
                run = 1
        else:
            run = 0
        out.append(char)
        previous = char
    return "".join(out)


def render_report_html(
    *,
    report: ReportLike,
    reader_name: str,
    prepared_on: datetime.date,
    cover_only: bool = False,
) -> str:
    """The report's HTML, from ``report.template_name`` (default :data:`REPORT_TEMPLATE`).

    With ``cover_only`` the template is asked (context variable ``cover_only``) to render the cover
    page alone; a site template that ignores it still works, only slower. ``next_step``
    (``REPORT_CTA``, else the site by its name) and ``site`` (``SITE_URL``) feed the closing page,
    see :func:`backpain_report.delivery.site.report_cta` (which may read the current ``Site``).
    """
    from ..site import report_cta, report_site  # site imports the models

    body_html = body_to_html(report.body)
    sections = report_sections(body_html)
    half = (len(sections) + 1) // 2
    context = {
        "report": report,
        "reader_name": reader_name_breakable(reader_name),
        "prepared_on": prepared_on,
        "body_html": body_html,
        "sections": sections,
        # The cover's "Inside" list in two lists that read down, left then right (CSS columns
        # would do the same at twice the cover's layout time).
        "sections_columns": [(1, sections[:half]), (half + 1, sections[half:])],
        "cover_only": cover_only,
        "next_step": report_cta(),
        "site": report_site(),
    }
    template_name = getattr(report, "template_name", "") or REPORT_TEMPLATE
    return render_to_string(template_name, context)


def font_configuration() -> FontConfiguration:
    """This thread's WeasyPrint font configuration, created once and reused by every render.

    A fresh one per render (WeasyPrint's default) loads the system's font configuration each
    time and leaks about 200 KiB of native memory per render (Pango font maps); a shared one
    keeps a worker's memory flat and loads each ``@font-face`` font once. Pango is not
    thread-safe, hence one per thread.
    """
    config = getattr(_thread, "font_config", None)
    if config is None:
        config = _thread.font_config = FontConfiguration()
    return config


def _parsed_stylesheet(css_text: str) -> CSS:
    """``css_text`` parsed by WeasyPrint once per thread (its ``@font-face`` rules load into
    this thread's font configuration, so a parsed sheet is not shared between threads)."""
    sheets: dict[str, CSS] = getattr(_thread, "stylesheets", None) or {}
    sheet = sheets.get(css_text)
    if sheet is None:
        if len(sheets) >= 4:
            sheets.clear()
        sheet = sheets[css_text] = CSS(
            string=css_text,
            base_url=_BASE_URL,
            url_fetcher=PackageOnlyURLFetcher(),
            font_config=font_configuration(),
            media_type="print",
        )
        _thread.stylesheets = sheets
    return sheet


def layout_html(source: str) -> Document:
    """Lay ``source`` out with WeasyPrint, fetching only files inside the package.

    The report's stylesheet, inlined by the template as ``<style>`` + ``report.css`` +
    ``</style>``, is parsed once per thread and handed to WeasyPrint already parsed (a quarter
    of a cover's render time) when it is the document's only stylesheet; a template that styles
    itself otherwise is laid out as it is.
    """
    css_text = render_to_string(REPORT_CSS)
    inline = f"<style>{css_text}</style>"
    stylesheets = None
    if inline in source and "!important" not in css_text:
        rest = source.replace(inline, "", 1)
        # WeasyPrint ranks a stylesheet given this way below the document's own (user origin):
        # the same result only when the document has no other stylesheet to rank against.
        # Tag names are case-insensitive: ``<STYLE>`` is a stylesheet of the site's too.
        lowered = rest.lower()
        if "<style" not in lowered and "<link" not in lowered:
            source, stylesheets = rest, [_parsed_stylesheet(css_text)]
    return HTML(
        string=source,
        base_url=_BASE_URL,
        url_fetcher=PackageOnlyURLFetcher(),
        media_type="print",
    ).render(font_config=font_configuration(), stylesheets=stylesheets, **PDF_OPTIONS)


def report_keywords(report: ReportLike) -> list[str]:
    """``report.keywords`` (a list or a comma-separated string) or :data:`DEFAULT_KEYWORDS`."""
    keywords = getattr(report, "keywords", None) or DEFAULT_KEYWORDS
    if isinstance(keywords, str):
        keywords = keywords.split(",")
    return [str(word).strip() for word in keywords if str(word).strip()]


def write_report_pdf(
    document: Document,
    *,
    report: ReportLike,
    prepared_on: datetime.date | None,
    compressed: bool = True,
) -> bytes:
    """Set the document's metadata from ``report`` and write it as PDF bytes (uncompressed, a
    classic cross-reference table and no object streams, when not ``compressed``)."""
    metadata = document.metadata
    metadata.title = report.title
    metadata.authors = [report.author] if report.author else []
    metadata.description = report.subtitle or metadata.description
    metadata.keywords = report_keywords(report)
    metadata.lang = get_language() or "en"  # the language its fixed texts are in
    stamp = prepared_on.isoformat() if prepared_on else None
    metadata.created = metadata.modified = stamp
    metadata.generator = "backpain_report"
    return document.write_pdf(**PDF_OPTIONS, uncompressed_pdf=not compressed)


def render_report_pdf(*, report: ReportLike, reader_name: str, prepared_on: datetime.date) -> bytes:
    """Render ``report`` personalised for ``reader_name`` and return the PDF file's bytes.

    ``report`` is any object with ``title``, ``subtitle``, ``slug``, ``edition``, ``author``,
    ``body`` (Markdown) and optionally ``template_name`` and ``keywords``. The reader's name
    is escaped by the template like any other text. The PDF carries title, author, subject,
    keywords and language metadata, bookmarks from the template's headings, and tags.
    """
    source = render_report_html(report=report, reader_name=reader_name, prepared_on=prepared_on)
    return write_report_pdf(layout_html(source), report=report, prepared_on=prepared_on)


def render_cover_pdf(*, report: ReportLike, reader_name: str, prepared_on: datetime.date) -> bytes:
    """Render only the personalised cover (page 1) of ``report``, with the full metadata,
    written uncompressed.

    :mod:`backpain_report.report.pdfcache` puts this page in place of the cover of a cached render,
    copying its objects as they are and deflating its streams (cheaper than WeasyPrint's
    compression followed by a parse of the result).
    """
    source = render_report_html(
        report=report, reader_name=reader_name, prepared_on=prepared_on, cover_only=True
    )
    document = layout_html(source)
    return write_report_pdf(document, report=report, prepared_on=prepared_on, compressed=False)
