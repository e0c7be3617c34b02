"""The report PDF at volume: the body is rendered once per edition, only the cover per reader.

:func:`report_pdf` is what :func:`backpain_report.report.pdfstore.delivery_pdf` calls. For each
edition of a report the whole document is rendered once with a placeholder cover (so page numbers,
"Page x of y", the contents, links, bookmarks and tags are exactly those of a full render) and kept
in the app's private storage (:mod:`backpain_report.report.privatestorage`) under
``backpain_report/cache/``. For each reader only the cover is rendered, and
:func:`backpain_report.report.pdfjoin.swap_cover` writes it over page 1 of the cached file as a PDF
incremental update: the cached bytes are copied unchanged, so the join costs milliseconds.

Why file storage and not the cache framework: a cached body (~120 kB) outlives restarts and
deploys, is shared by every worker on every host, has no item-size limit (memcached: 1 MB) and
no eviction surprises, and can be looked at. Each process also keeps the last few bodies in
memory, so storage is read once per process and edition.

The file name holds the report's pk, its edition and a keyed hash (HMAC with ``SECRET_KEY``) of
the HTML the body is rendered from (template, stylesheet, Markdown, title, ...), of the drawings
the stylesheet fetches and of the renderer's versions: editing the report, its template, a
drawing or upgrading WeasyPrint changes the name, so a stale body is never used, and nobody
without the key can work the name out. Files are written under a temporary name and moved into
place (or saved whole to object storage), so two workers rendering one edition at once both
succeed and no reader of the cache sees half a file.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Protocol

import weasyprint
from django.core.files.storage import Storage

from .. import __version__
from .pdf import (
    PACKAGE_DIR,
    PDF_OPTIONS,
    ReportLike,
    layout_html,
    render_cover_pdf,
    render_report_html,
    render_report_pdf,
    write_report_pdf,
)
from .pdfjoin import BasePdf, JoinError, swap_cover
from .privatestorage import file_write, keyed_digest, private_storage

logger = logging.getLogger(__name__)

CACHE_DIR = "backpain_report/cache"
#: The drawings the report's stylesheet fetches (their bytes are part of the cached body's name).
DRAWINGS_DIR = PACKAGE_DIR / "templates" / "backpain_report" / "report" / "exercises"
#: Date and name on the placeholder cover of the cached render (the cover is replaced).
PLACEHOLDER_DATE = datetime.date(2000, 1, 1)
PLACEHOLDER_NAME = ""
#: How many cached bodies each process keeps in memory.
MEMORY_ITEMS = 4

_memory: OrderedDict[str, BasePdf] = OrderedDict()
_memory_lock = threading.Lock()


class StoredReportLike(ReportLike, Protocol):
    """A report with a primary key (a saved ``Report`` row, or a stand-in with ``pk`` set)."""

    pk: Any


def cache_storage() -> Storage:
    """The storage holding cached bodies: the app's private storage (``PRIVATE_STORAGE``)."""
    return private_storage()


def _placeholder_html(report: ReportLike) -> str:
    return render_report_html(
        report=report, reader_name=PLACEHOLDER_NAME, prepared_on=PLACEHOLDER_DATE
    )


def drawings_digest() -> str:
    """A digest of the report's drawings (``report/exercises/*.svg``): the stylesheet fetches
    them by URL, so, unlike the stylesheet itself, they are not in the HTML. Read on each call
    (six small files): a redrawn figure renames the cached body even within one version."""
    digest = hashlib.sha256()
    for path in sorted(DRAWINGS_DIR.glob("*.svg")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_name(report: StoredReportLike, source: str | None = None) -> str:
    """The storage name of the cached body of ``report``'s current edition and content."""
    source = _placeholder_html(report) if source is None else source
    parts = (
        source,
        drawings_digest(),
        __version__,
        weasyprint.__version__,
        repr(sorted(PDF_OPTIONS.items())),
    )
    digest = keyed_digest("pdfcache", "\0".join(parts), length=20)
    return f"{CACHE_DIR}/report-{report.pk}-ed{report.edition}-{digest}.pdf"


def _remember(name: str, base: BasePdf) -> BasePdf:
    with _memory_lock:
        _memory[name] = base
        _memory.move_to_end(name)
        while len(_memory) > MEMORY_ITEMS:
            _memory.popitem(last=False)
    return base


def _read(storage: Storage, name: str) -> BasePdf | None:
    """The cached body ``name`` from storage, or None if it is missing or unreadable."""
    try:
        with storage.open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        return BasePdf.from_bytes(data)
    except JoinError:
        logger.warning("Unreadable cached report body %s; rendering it again.", name)
        storage.delete(name)
        return None


def cached_body(report: StoredReportLike, *, storage: Storage | None = None) -> BasePdf:
    """The placeholder-cover render of ``report``'s edition: from memory, storage, or rendered.

    ``storage`` defaults to :func:`cache_storage`.
    """
    source = _placeholder_html(report)
    name = cache_name(report, source)
    with _memory_lock:
        base = _memory.get(name)
    if base is not None:
        return base
    try:
        storage = cache_storage() if storage is None else storage
        base = _read(storage, name)
    except Exception:  # a sick or refused storage costs a render, never a report
        logger.warning("Report body cache unreadable; rendering %s.", name, exc_info=True)
        storage, base = None, None
    if base is None:
        document = layout_html(source)
        data = write_report_pdf(document, report=report, prepared_on=PLACEHOLDER_DATE)
        base = BasePdf.from_bytes(data)
        if storage is not None:
            try:
                file_write(storage, name, data)
            except Exception:  # as above: kept in this process's memory only
                logger.warning("Could not store the report body %s.", name, exc_info=True)
    return _remember(name, base)


def report_pdf(
    *,
    report: StoredReportLike,
    reader_name: str,
    prepared_on: datetime.date,
    storage: Storage | None = None,
) -> bytes:
    """The report personalised for ``reader_name``: the cached body with a fresh cover.

    Same arguments and result as :func:`backpain_report.report.pdf.render_report_pdf` (``report``
    also needs ``pk``), at a fraction of the cost. A report whose template the cover swap cannot
    handle (e.g. links on the cover) is rendered in full instead, and a warning logged.
    ``storage`` (default :func:`cache_storage`) holds the cached bodies.
    """
    base = cached_body(report, storage=storage)
    cover = render_cover_pdf(report=report, reader_name=reader_name, prepared_on=prepared_on)
    try:
        return swap_cover(base, cover)
    except JoinError as exc:
        logger.warning("Report %s: cover swap impossible (%s); full render.", report.pk, exc)
        return render_report_pdf(report=report, reader_name=reader_name, prepared_on=prepared_on)


def invalidate(report: StoredReportLike) -> int:
    """Delete every cached body of ``report`` (all editions); returns how many files went.

    Not needed for correctness (a new edition or content has a new name), but keeps the
    storage tidy: call it when a report is edited or deleted.
    """
    prefix = f"report-{report.pk}-ed"
    with _memory_lock:
        for name in [name for name in _memory if name.rpartition("/")[2].startswith(prefix)]:
            del _memory[name]
    storage = cache_storage()
    try:
        _dirs, files = storage.listdir(CACHE_DIR)
    except FileNotFoundError:
        return 0
    gone = [name for name in files if name.startswith(prefix) and name.endswith(".pdf")]
    for name in gone:
        storage.delete(f"{CACHE_DIR}/{name}")
    return len(gone)


def clear_memory() -> None:
    """Forget the bodies held in this process (tests, benchmarks)."""
    with _memory_lock:
        _memory.clear()
