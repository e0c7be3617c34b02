"""The PDF for a delivery: :func:`delivery_pdf` renders it; stored privately for download links.

:func:`delivery_pdf` is the one way to get a reader's PDF: the report's current edition with the
reader's name on the cover, dated the day the delivery was (or is being) sent, in the reader's
language. The sender attaches it; :func:`delivery_pdf_get` gives a download link the stored
file, rendering and storing it when it is missing.

A reader's PDF is stored the first time it is rendered: by the worker when the email carries a
download link, else by the download view on the first GET. It lives in the app's private storage
(:mod:`backpain_report.report.privatestorage`) as ``backpain_report/readers/<d[:2]>/<d>/<c>.pdf``:
``d`` is a keyed hash (HMAC with ``SECRET_KEY``) of the delivery's id and ``c`` a keyed hash of
everything the PDF is made of (delivery, report, edition, the reader's name, the date on the
cover, the language). Nobody without the key can work a name out; a renamed reader, a new
edition or another language is a new file; and deleting a delivery's files is emptying one
small folder. A download link names the language of the email that carried it, so an old
email's link keeps serving its language after the reader signs up again in another.

The file holds the reader's name: :func:`delivery_files_delete` must run wherever deliveries go
(erasure calls :func:`subscriber_files_delete`; a purge that deletes rows calls the former), and
whoever stores one re-checks afterwards that it is still wanted (``still_wanted``), so a render
that races an erasure leaves no file behind.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.files.storage import Storage
from django.utils import timezone, translation

from ..models import Delivery
from .privatestorage import file_write, keyed_digest, keyed_digests, private_storage

logger = logging.getLogger(__name__)

READERS_DIR = "backpain_report/readers"


@dataclass(frozen=True)
class StoredPdf:
    """A reader's PDF: where it is, its validators, and how to read it."""

    name: str
    etag: str
    storage: Storage | None = None  # None when it could not be stored: ``data`` holds it
    data: bytes | None = None
    modified: datetime.datetime | None = None

    def read(self) -> bytes:
        """The PDF's bytes (a few hundred kB)."""
        if self.storage is None:
            return self.data or b""
        with self.storage.open(self.name, "rb") as handle:
            return handle.read()

    def size(self) -> int:
        """The PDF's length in bytes, without reading it."""
        if self.storage is None:
            return len(self.data or b"")
        return self.storage.size(self.name)


def delivery_prepared_on(delivery: Delivery) -> datetime.date:
    """The date on the reader's cover: the day the delivery was (or is being) sent."""
    return timezone.localdate(delivery.sent_at or timezone.now())


def delivery_language(delivery: Delivery, language: str | None = None) -> str:
    """The language of ``delivery``'s PDF: ``language`` (a download link's, the email's that
    carried it) when the site offers it, else the reader's current language."""
    fallback = delivery.subscriber.writing_language()
    try:  # one spelling per language: "en-us" and "en" name one file where the site has "en"
        return translation.get_supported_language_variant(language or fallback)
    except LookupError:
        return fallback


def delivery_pdf(delivery: Delivery, language: str | None = None) -> bytes:
    """The reader's PDF for a delivery, dated the day it was (or is being) sent, in
    :func:`delivery_language` (also when a download link renders it in a web request)."""
    from .pdfcache import report_pdf  # WeasyPrint: imported where the PDF is rendered

    with translation.override(delivery_language(delivery, language)):
        return report_pdf(
            report=delivery.report,
            reader_name=delivery.subscriber.name,
            prepared_on=delivery_prepared_on(delivery),
        )


def _delivery_dirs(delivery_id: int) -> list[str]:
    """The delivery's folder under the current key and under each fallback key."""
    return [f"{READERS_DIR}/{d[:2]}/{d}" for d in keyed_digests("reader-pdf", str(delivery_id))]


def delivery_pdf_name(
    delivery: Delivery, prepared_on: datetime.date | None = None, *, language: str | None = None
) -> str:
    """The storage name of ``delivery``'s PDF as it would be rendered now (or ``prepared_on``)
    in :func:`delivery_language`: a PDF in another language is another file."""
    prepared_on = prepared_on or delivery_prepared_on(delivery)
    folder = keyed_digest("reader-pdf", str(delivery.pk))
    made_of = "\0".join(
        str(part)
        for part in (
            delivery.pk,
            delivery.report_id,
            delivery.report.edition,
            delivery.subscriber.name,
            prepared_on.isoformat(),
            delivery_language(delivery, language),
        )
    )
    content = keyed_digest("reader-pdf-content", made_of)
    return f"{READERS_DIR}/{folder[:2]}/{folder}/{content}.pdf"


def _etag(name: str) -> str:
    """A weak validator: one per reader, edition and date (a re-render may differ in bytes)."""
    return f'W/"{name.rpartition("/")[2].removesuffix(".pdf")}"'


def _modified(storage: Storage, name: str) -> datetime.datetime | None:
    try:
        return storage.get_modified_time(name)
    except (NotImplementedError, OSError):
        return None


def delivery_pdf_find(delivery: Delivery, *, language: str | None = None) -> StoredPdf | None:
    """The stored PDF of ``delivery`` in ``language`` if it is there (and current), else None."""
    storage = private_storage()
    name = delivery_pdf_name(delivery, language=language)
    if not storage.exists(name):
        return None
    return StoredPdf(
        name=name, etag=_etag(name), storage=storage, modified=_modified(storage, name)
    )


class PdfNoLongerWanted(Exception):
    """The delivery stopped wanting its PDF while it was being stored; its files were deleted."""


def delivery_pdf_save(
    delivery: Delivery,
    data: bytes,
    prepared_on: datetime.date,
    *,
    language: str | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> StoredPdf:
    """Store ``data`` as ``delivery``'s PDF in ``language``; its older files (another date,
    name, edition or language) go.

    ``still_wanted`` is asked once the file is written; if it answers False (or raises), the
    delivery's files are deleted again and :class:`PdfNoLongerWanted` is raised (or its error).

    This is what keeps a PDF written during an erasure from outliving it. The erasure first
    commits the change that makes ``still_wanted`` False (the reader unsubscribed, their rows
    cancelled), then deletes the files. So whatever the order:

    - the erasure commits before the write, or between the write and the re-check: the re-check
      sees it, and the file is deleted here;
    - it commits after the re-check: its own deletion comes later still, after the write, and
      finds the file.

    Callers make ``still_wanted`` lock (or conditionally UPDATE) the delivery's row, which the
    erasure updates too: on PostgreSQL the re-check then waits for an erasure in flight, so even
    one run inside a larger transaction (deleting the files before it commits) is ordered.
    """
    storage = private_storage()
    name = delivery_pdf_name(delivery, prepared_on, language=language)
    file_write(storage, name, data)
    folder, _, current = name.rpartition("/")
    for other in storage.listdir(folder)[1]:
        if other != current:
            storage.delete(f"{folder}/{other}")
    if still_wanted is not None:
        try:
            wanted = still_wanted()
        except BaseException:
            delivery_files_delete([delivery.pk])
            raise
        if not wanted:
            delivery_files_delete([delivery.pk])
            raise PdfNoLongerWanted(f"Delivery {delivery.pk} stopped while its PDF was stored.")
    return StoredPdf(
        name=name, etag=_etag(name), storage=storage, modified=_modified(storage, name)
    )


def delivery_pdf_get(
    *,
    delivery: Delivery,
    language: str | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> StoredPdf:
    """The stored PDF of ``delivery`` in ``language`` (see :func:`delivery_language`);
    rendered with :func:`delivery_pdf` and stored if missing.

    ``still_wanted`` is as in :func:`delivery_pdf_save`: after a render, a delivery that is no
    longer wanted keeps no file and :class:`PdfNoLongerWanted` is raised. A storage that fails
    is logged and the rendered bytes are served from memory: the reader still gets their PDF,
    only the next request renders it again.
    """
    try:
        stored = delivery_pdf_find(delivery, language=language)
    except Exception:  # a sick storage costs a render, not the download
        logger.warning("Private storage unreadable for delivery %s", delivery.pk, exc_info=True)
        stored = None
    if stored is not None:
        return stored
    prepared_on = delivery_prepared_on(delivery)
    data = delivery_pdf(delivery, language)
    try:
        return delivery_pdf_save(
            delivery, data, prepared_on, language=language, still_wanted=still_wanted
        )
    except PdfNoLongerWanted:
        raise
    except Exception:  # as above
        logger.warning("Could not store the PDF of delivery %s", delivery.pk, exc_info=True)
        name = delivery_pdf_name(delivery, prepared_on, language=language)
        return StoredPdf(name=name, etag=_etag(name), data=data)


def delivery_files_delete(delivery_ids: Iterable[int]) -> int:
    """Delete every stored PDF of these deliveries (under the current and fallback keys).

    Returns how many files went. Call it wherever deliveries are deleted or their reader erased.
    """
    storage = private_storage()
    gone = 0
    for delivery_id in delivery_ids:
        for folder in _delivery_dirs(delivery_id):
            try:
                files = storage.listdir(folder)[1]
            except FileNotFoundError:
                continue
            for name in files:
                storage.delete(f"{folder}/{name}")
                gone += 1
            _remove_empty_folder(storage, folder)
    return gone


def _remove_empty_folder(storage: Storage, folder: str) -> None:
    """On a file system, remove the delivery's now empty folder (object storage has none)."""
    path = getattr(storage, "path", None)
    if path is None:
        return
    with contextlib.suppress(OSError, NotImplementedError):
        os.rmdir(path(folder))


def subscriber_files_delete(*, subscriber_id: int) -> int:
    """Delete the stored PDFs of every delivery of one subscriber; returns how many went."""
    ids = Delivery.objects.filter(subscriber_id=subscriber_id).values_list("pk", flat=True)
    return delivery_files_delete(list(ids))
