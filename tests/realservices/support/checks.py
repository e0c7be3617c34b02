"""Checks on what arrived at the SMTP server: the MIME, the PDF and the database row."""

from __future__ import annotations

import io
import re
from email.message import EmailMessage

from pypdf import PdfReader

ARTICLE_PHRASES = ("erector spinae", "good posture")
MIN_PAGES = 4


def pdf_attachment(message: EmailMessage) -> tuple[str, bytes]:
    """The (filename, bytes) of the one PDF attached to ``message``."""
    pdfs = [
        part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"
    ]
    assert len(pdfs) == 1, (
        f"expected one PDF attachment, found {len(pdfs)}: "
        f"{[p.get_content_type() for p in message.walk()]}"
    )
    payload = pdfs[0].get_payload(decode=True)
    assert payload and payload.startswith(b"%PDF-"), "the attachment is not a PDF"
    return pdfs[0].get_filename() or "", payload


def normalise(text: str) -> str:
    """Lower case, hyphenated line breaks joined, runs of white space made one space."""
    text = re.sub(r"-\s*\n\s*", "", text)
    return " ".join(text.split()).lower()


def check_report_pdf(pdf: bytes, *, reader_name: str) -> dict[str, object]:
    """Assert the report is personalised and complete; return facts for the test's output."""
    reader = PdfReader(io.BytesIO(pdf))
    pages = len(reader.pages)
    assert pages >= MIN_PAGES, f"the report has {pages} pages, expected at least {MIN_PAGES}"
    first = normalise(reader.pages[0].extract_text() or "")
    assert reader_name.lower() in first, f"{reader_name!r} not on page 1: {first[:400]!r}"
    everything = normalise(" ".join(page.extract_text() or "" for page in reader.pages))
    missing = [phrase for phrase in ARTICLE_PHRASES if phrase not in everything]
    assert not missing, f"phrases missing from the report: {missing}"
    return {"pages": pages, "bytes": len(pdf)}
