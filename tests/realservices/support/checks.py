"""Checks on what arrived at the SMTP server: the MIME, the PDF and the database row."""

from __future__ import annotations

import io
import re
import urllib.request
from email.message import EmailMessage
from html.parser import HTMLParser

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


DOWNLOAD_LINK = re.compile(r"https?://\S+/download/\S+/")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, dict(response.headers), response.read()


def pdf_downloaded(message: EmailMessage) -> tuple[str, bytes]:
    """The (filename, bytes) of the PDF behind the email's download button, fetched from the
    site as a reader's click would; the email carries no attachment (``DELIVERY`` is "link",
    the default). Also checks the cover picture above the button loads."""
    assert not list(message.iter_attachments()), "the default delivery attaches nothing"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    [link] = set(DOWNLOAD_LINK.findall(text.get_content()))
    assert f'href="{link}"' in html.get_content(), "the HTML has the text's download link"
    images = _Images()
    images.feed(html.get_content())
    [cover] = images.sources
    status, headers, body = _get(cover)
    assert status == 200 and headers.get("Content-Type") == "image/png", (cover, status)
    assert body.startswith(b"\x89PNG")
    status, headers, pdf = _get(link)
    assert status == 200 and headers.get("Content-Type") == "application/pdf", (link, status)
    assert pdf.startswith(b"%PDF-"), "the download is not a PDF"
    filename = re.search(r'filename="([^"]+)"', headers.get("Content-Disposition", ""))
    return (filename.group(1) if filename else ""), pdf


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
