"""The report's cover as a PNG: page 1 of the real PDF, rasterised once per edition.

The article page shows it beside the offer and social cards use it as ``og:image``. It is the
cover the reader gets, rendered by :func:`backpain_report.report.pdf.render_cover_pdf` (the page the
cover swap puts in front of every reader's copy) for "You", dated the day the report was last
changed: the cached edition render's own cover (:mod:`backpain_report.report.pdfcache`) carries a
placeholder date (1 January 2000) that would show on the picture.

The PNG is kept in the app's private storage beside the cached bodies, named by the report's pk,
edition and a keyed hash of the cover's HTML and the renderers' versions (editing the report, its
template or upgrading WeasyPrint or pypdfium2 makes a new one), and in each process's memory. A
process renders one cover at a time (PDFium is not thread-safe), and a request that finds another
rendering the same cover waits for it rather than rendering it again; two processes or hosts may
both render a new edition once, and both write the same bytes (:func:`file_write`).
"""

from __future__ import annotations

import datetime
import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib.metadata import version

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import get_language

from .. import __version__
from ..models import Report
from .privatestorage import file_write, keyed_digest, private_storage

logger = logging.getLogger(__name__)

CACHE_DIR = "backpain_report/cache"
#: Width of the PNG in pixels (about 3x the size the article page shows it at; A4 makes it
#: 640 x 905, large enough for a social card).
WIDTH = 640
#: How many covers each process keeps in memory.
MEMORY_ITEMS = 8

_memory: OrderedDict[tuple, CoverImage] = OrderedDict()
_memory_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
_render_lock = threading.Lock()  # PDFium: one call at a time per process


@dataclass(frozen=True)
class CoverImage:
    """A cover PNG and its validator."""

    data: bytes
    etag: str
    modified: datetime.datetime | None

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels, read from the PNG header."""
        return int.from_bytes(self.data[16:20], "big"), int.from_bytes(self.data[20:24], "big")


def cover_date(report: Report) -> datetime.date:
    """The date printed on the pictured cover: when the report was last changed."""
    moment = report.updated_at or timezone.now()
    return timezone.localdate(moment) if timezone.is_aware(moment) else moment.date()


def pdf_page_png(pdf: bytes, *, width: int = WIDTH, page: int = 0) -> bytes:
    """Page ``page`` of ``pdf`` as a PNG ``width`` pixels wide (pypdfium2, no OS packages)."""
    import pypdfium2

    with _render_lock:
        document = pypdfium2.PdfDocument(pdf)
        try:
            pdf_page = document[page]
            image = pdf_page.render(scale=width / pdf_page.get_width()).to_pil()
            pdf_page.close()
        finally:
            document.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


def _key(report: Report) -> tuple:
    # The cover's fixed texts ("Prepared for", "Edition") are in the active language.
    return (report.pk, report.edition, report.updated_at, get_language())


def _storage_name(report: Report, source: str) -> tuple[str, str]:
    import weasyprint

    versions = (__version__, weasyprint.__version__, version("pypdfium2"), str(WIDTH))
    digest = keyed_digest("cover", "\0".join((source, *versions)), length=20)
    return f"{CACHE_DIR}/cover-{report.pk}-ed{report.edition}-{digest}.png", digest


def _render(report: Report) -> CoverImage:
    """Find the cover in storage, else render and store it."""
    from .pdf import render_cover_pdf, render_report_html

    if "body" in report.get_deferred_fields():
        report.refresh_from_db(fields=["body"])
    prepared_on = cover_date(report)
    source = render_report_html(
        report=report, reader_name="", prepared_on=prepared_on, cover_only=True
    )
    name, digest = _storage_name(report, source)
    storage = private_storage()
    try:
        with storage.open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        data = b""
    except Exception:  # a sick storage costs a render, never the picture
        logger.warning("Private storage unreadable for cover %s.", name, exc_info=True)
        data = b""
    if not data.startswith(b"\x89PNG"):
        pdf = render_cover_pdf(report=report, reader_name="", prepared_on=prepared_on)
        data = pdf_page_png(pdf)
        try:
            file_write(storage, name, data)
        except Exception:  # kept in this process's memory only
            logger.warning("Could not store the cover %s.", name, exc_info=True)
    return CoverImage(data=data, etag=f'"{digest}"', modified=report.updated_at)


def report_cover(report: Report) -> CoverImage:
    """The cover PNG of ``report``'s current edition: from memory, storage, or rendered once.

    ``report`` may have its ``body`` deferred; it is read only when the cover is not in memory.
    """
    key = _key(report)
    with _memory_lock:
        image = _memory.get(key)
        if image is not None:
            _memory.move_to_end(key)
            return image
        lock = _key_locks.setdefault(key, threading.Lock())
    try:
        with lock:  # a second request for the same cover waits here, then finds it in memory
            with _memory_lock:
                image = _memory.get(key)
            if image is None:
                image = _render(report)
                with _memory_lock:
                    _memory[key] = image
                    while len(_memory) > MEMORY_ITEMS:
                        _memory.popitem(last=False)
    finally:  # a failed render leaves no lock behind
        with _memory_lock:
            _key_locks.pop(key, None)
    return image


def clear_memory() -> None:
    """Forget the covers held in this process (tests)."""
    with _memory_lock:
        _memory.clear()


@receiver(setting_changed)
def _forget_on_setting_change(*, setting: str, **kwargs: object) -> None:
    if setting in {"TEMPLATES", "STORAGES", "BACKPAIN_REPORT", "SECRET_KEY"}:
        clear_memory()
