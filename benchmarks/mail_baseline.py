"""The end-to-end row's baseline: build and send the same email, its PDF pre-built, over SMTP.

    DJANGO_SETTINGS_MODULE=benchmarks.baseline.settings EMAIL_PORT=... \\
        python -m benchmarks.mail_baseline MESSAGE.eml --processes 2 --seconds 10

``MESSAGE.eml`` is one report email as the worker sent it (the suite saves the first one the
sink received). Each of ``--processes`` forked processes builds that email anew with Django's
``EmailMultiAlternatives`` (subject, text and HTML parts, the PDF attached, the List-* headers)
for a fresh recipient and sends it over a new SMTP connection, as the worker does for one
delivery, for ``--seconds``. Prints one JSON line: emails per second per process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

KEEP_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted", "Precedence")


def email_parts(raw: bytes) -> dict:
    """Subject, sender, text, HTML, attachments and list headers of a received email."""
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[assignment]
    text = html = ""
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename:
            attachments.append((filename, part.get_payload(decode=True), part.get_content_type()))
        elif part.get_content_type() == "text/plain" and not text:
            text = part.get_content()
        elif part.get_content_type() == "text/html" and not html:
            html = part.get_content()
    return {
        "subject": str(message["Subject"] or ""),
        "from": str(message["From"] or ""),
        "text": text,
        "html": html,
        "attachments": attachments,
        "headers": {name: str(message[name]) for name in KEEP_HEADERS if message[name]},
    }


def send_for(parts: dict, seconds: float, tag: str, start_at: float) -> tuple[int, float]:
    """Send fresh copies for ``seconds`` from ``start_at`` (wall clock); (count, elapsed)."""
    from django.core.mail import EmailMultiAlternatives

    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    sent = 0
    while time.perf_counter() - started < seconds:
        email = EmailMultiAlternatives(
            subject=parts["subject"],
            body=parts["text"],
            from_email=parts["from"],
            to=[f"baseline-{tag}-{sent}@example.com"],
            headers=parts["headers"],
        )
        if parts["html"]:
            email.attach_alternative(parts["html"], "text/html")
        for filename, content, mimetype in parts["attachments"]:
            email.attach(filename, content, mimetype)
        email.send()
        sent += 1
    return sent, time.perf_counter() - started


def _child(parts: dict, seconds: float, tag: str, start_at: float, out) -> None:
    import django

    django.setup()
    out.put(send_for(parts, seconds, tag, start_at))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", type=Path)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    parts = email_parts(args.message.read_bytes())
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 2.0  # every process set up before any sends
    children = [
        context.Process(target=_child, args=(parts, args.seconds, str(i), start_at, out))
        for i in range(args.processes)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=args.seconds + 120) for _ in children]
    for child in children:
        child.join(30)
    rates = [sent / elapsed for sent, elapsed in results]
    print(
        json.dumps(
            {
                "per_process": sum(rates) / len(rates),
                "rates": rates,
                "sent": sum(sent for sent, _ in results),
                "pdf_bytes": sum(len(a[1]) for a in parts["attachments"]),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
