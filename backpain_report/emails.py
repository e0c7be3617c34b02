"""Build the report email: text and HTML bodies, the PDF, unsubscribe links and headers."""

from __future__ import annotations

from email.utils import make_msgid, parseaddr

from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from . import links
from .conf import app_settings
from .models import Delivery

SUBJECT_TEMPLATE = "backpain_report/email/report_subject.txt"
TEXT_TEMPLATE = "backpain_report/email/report.txt"
HTML_TEMPLATE = "backpain_report/email/report.html"


def pdf_filename(delivery: Delivery) -> str:
    return f"{delivery.report.slug}-edition-{delivery.edition}.pdf"


def new_message_id() -> str:
    """A Message-ID in the sender's domain, recorded on the Delivery before sending."""
    domain = parseaddr(app_settings.FROM_EMAIL or "")[1].rpartition("@")[2] or None
    return make_msgid(domain=domain)


def build_report_email(
    *, delivery: Delivery, pdf: bytes | None, message_id: str
) -> EmailMultiAlternatives:
    """The multipart message for one delivery; ``pdf`` is attached when given."""
    subscriber = delivery.subscriber
    context = {
        "delivery": delivery,
        "subscriber": subscriber,
        "report": delivery.report,
        "name": subscriber.name,
        "unsubscribe_url": links.unsubscribe_url(subscriber),
        "site_url": links.site_url(subscriber),
        "attached": pdf is not None,
    }
    subject = " ".join(render_to_string(SUBJECT_TEMPLATE, context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(TEXT_TEMPLATE, context),
        from_email=app_settings.FROM_EMAIL,
        to=[subscriber.email],
        headers={
            "Message-ID": message_id,
            "List-Unsubscribe": f"<{links.one_click_unsubscribe_url(subscriber)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(render_to_string(HTML_TEMPLATE, context), "text/html")
    if pdf is not None:
        message.attach(pdf_filename(delivery), pdf, "application/pdf")
    return message
