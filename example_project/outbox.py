"""A development-only page that shows the mail Django's file-based email backend wrote.

The backend writes each connection's messages to one ``<timestamp>-<id>.log`` file in
``settings.EXAMPLE_OUTBOX_DIR``, every message followed by a line of 79 dashes. A message is
named by its file and its position in that file; a file name is only used after it was found in
the directory listing, so a request cannot reach any other file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils.http import content_disposition_header
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

SEPARATOR = b"\n" + b"-" * 79 + b"\n"
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.log")
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"}
HTML_BODY_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
_parser = BytesParser(policy=policy.default)


# --- Reading the outbox -------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    name: str
    index: int
    date: datetime
    sender: str
    to: str
    subject: str
    size: int


@dataclass(frozen=True)
class Attachment:
    part: int
    filename: str
    content_type: str
    size: int


def outbox_dir() -> Path:
    return Path(settings.EXAMPLE_OUTBOX_DIR)


def list_files(directory: Path) -> list[str]:
    """Names of the regular ``.log`` files in ``directory`` (no links, no sub-folders)."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        entry.name
        for entry in entries
        if FILE_NAME.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink()
    )


def split_messages(data: bytes) -> list[bytes]:
    """The raw messages in one file written by the file-based backend."""
    return [chunk for chunk in data.split(SEPARATOR) if chunk.strip()]


def read_raw(directory: Path, name: str, index: int) -> bytes:
    """The raw bytes of message ``index`` in file ``name``; LookupError when there is none."""
    if name not in list_files(directory):
        raise LookupError(name)
    messages = split_messages((directory / name).read_bytes())
    if not 0 <= index < len(messages):
        raise LookupError(f"{name}:{index}")
    return messages[index]


def parse(raw: bytes, *, headers_only: bool = False) -> EmailMessage:
    return _parser.parsebytes(raw, headersonly=headers_only)  # type: ignore[return-value]


def message_date(message: EmailMessage, fallback: datetime) -> datetime:
    header = message["Date"]
    value = getattr(header, "datetime", None)
    if value is None:
        return fallback
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def summaries(directory: Path) -> list[Summary]:
    """Every captured message, newest first."""
    found = []
    for name in list_files(directory):
        file = directory / name
        try:
            data = file.read_bytes()
            modified = datetime.fromtimestamp(file.stat().st_mtime, tz=timezone.utc)
        except OSError:  # removed while we listed: skip it
            continue
        for index, raw in enumerate(split_messages(data)):
            message = parse(raw, headers_only=True)
            found.append(
                Summary(
                    name=name,
                    index=index,
                    date=message_date(message, modified),
                    sender=str(message["From"] or "").strip(),
                    to=str(message["To"] or "").strip(),
                    subject=str(message["Subject"] or "(no subject)").strip(),
                    size=len(raw),
                )
            )
    found.sort(key=lambda s: (s.date, s.name, s.index), reverse=True)
    return found


def leaf_parts(message: EmailMessage) -> list[EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


def bodies(message: EmailMessage) -> tuple[EmailMessage | None, EmailMessage | None]:
    """The text and the HTML body parts (either may be missing)."""
    return message.get_body(("plain",)), message.get_body(("html",))  # type: ignore[return-value]


def attachments(message: EmailMessage) -> list[Attachment]:
    """Every leaf part that is not one of the bodies, numbered by its place in the message."""
    body_parts = [part for part in bodies(message) if part is not None]
    found = []
    for number, part in enumerate(leaf_parts(message)):
        if any(part is body for body in body_parts):
            continue
        payload = part.get_payload(decode=True) or b""
        content_type = part.get_content_type()
        found.append(
            Attachment(
                part=number,
                filename=part.get_filename() or f"part-{number}",
                content_type=content_type,
                size=len(payload),
            )
        )
    return found


# --- Views ------------------------------------------------------------------------------------


def _enabled() -> None:
    if not (settings.DEBUG or getattr(settings, "EXAMPLE_MAIL_CAPTURED", False)):
        raise Http404("The outbox is only shown in development.")


def _load(name: str, index: int) -> tuple[bytes, EmailMessage]:
    _enabled()
    try:
        raw = read_raw(outbox_dir(), name, index)
    except LookupError:
        raise Http404("No such message.") from None
    return raw, parse(raw)


@require_GET
def message_list(request: HttpRequest) -> HttpResponse:
    _enabled()
    page = Paginator(summaries(outbox_dir()), 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "outbox_dir": outbox_dir(),
        "captured": getattr(settings, "EXAMPLE_MAIL_CAPTURED", False),
    }
    return render(request, "example_project/outbox/list.html", context)


@require_GET
def message_detail(request: HttpRequest, name: str, index: int) -> HttpResponse:
    raw, message = _load(name, index)
    text_part, html_part = bodies(message)
    context = {
        "name": name,
        "index": index,
        "headers": [(key, str(value).strip()) for key, value in message.items()],
        "subject": str(message["Subject"] or "(no subject)").strip(),
        "text_body": text_part.get_content() if text_part is not None else None,
        "has_html": html_part is not None,
        "attachments": attachments(message),
        "size": len(raw),
    }
    return render(request, "example_project/outbox/detail.html", context)


@require_GET
@xframe_options_sameorigin
def message_html(request: HttpRequest, name: str, index: int) -> HttpResponse:
    """The HTML body, for a sandboxed iframe: no scripts, no forms, no remote content."""
    _raw, message = _load(name, index)
    _text, html_part = bodies(message)
    if html_part is None:
        raise Http404("This message has no HTML body.")
    response = HttpResponse(html_part.get_content(), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = HTML_BODY_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def message_part(request: HttpRequest, name: str, index: int, part: int) -> HttpResponse:
    """One attachment: PDFs, images and text open in the browser, the rest downloads."""
    _raw, message = _load(name, index)
    found = {a.part: a for a in attachments(message)}
    if part not in found:
        raise Http404("No such attachment.")
    attachment = found[part]
    payload = leaf_parts(message)[part].get_payload(decode=True) or b""
    inline = attachment.content_type in INLINE_TYPES and not request.GET.get("download")
    content_type = attachment.content_type if inline else "application/octet-stream"
    if content_type == "text/plain":
        charset = leaf_parts(message)[part].get_content_charset() or "utf-8"
        content_type = f"text/plain; charset={charset}"
    response = HttpResponse(payload, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=not inline, filename=attachment.filename
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def message_source(request: HttpRequest, name: str, index: int) -> HttpResponse:
    """The message as it would go over the wire, as plain text."""
    raw, _message = _load(name, index)
    response = HttpResponse(raw, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response


app_name = "outbox"
urlpatterns = [
    path("", message_list, name="list"),
    path("<str:name>/<int:index>/", message_detail, name="detail"),
    path("<str:name>/<int:index>/html/", message_html, name="html"),
    path("<str:name>/<int:index>/part/<int:part>/", message_part, name="part"),
    path("<str:name>/<int:index>/source/", message_source, name="source"),
]
