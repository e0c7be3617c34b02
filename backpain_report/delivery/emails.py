"""Build the emails: the report (text and HTML bodies, the PDF), the confirmation request and
the follow-ups, each with the unsubscribe link and headers."""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME
from django.template.loader import render_to_string
from django.utils.crypto import salted_hmac

from .. import site
from ..conf import app_settings
from ..config.validators import MESSAGE_ID_FORMAT, message_id_domain
from ..models import Article, Delivery, FollowUpEdition, FollowUpStep
from ..page import offer
from ..report.markup import render_markdown
from . import links
from .mailheaders import headers_replace

SUBJECT_TEMPLATE = "backpain_report/email/report_subject.txt"
TEXT_TEMPLATE = "backpain_report/email/report.txt"
HTML_TEMPLATE = "backpain_report/email/report.html"
CONFIRM_SUBJECT_TEMPLATE = "backpain_report/email/confirm_subject.txt"
CONFIRM_TEXT_TEMPLATE = "backpain_report/email/confirm.txt"
CONFIRM_HTML_TEMPLATE = "backpain_report/email/confirm.html"
FOLLOWUP_SUBJECT_TEMPLATE = "backpain_report/email/followup_subject.txt"
FOLLOWUP_TEXT_TEMPLATE = "backpain_report/email/followup.txt"
FOLLOWUP_HTML_TEMPLATE = "backpain_report/email/followup.html"


def pdf_filename(delivery: Delivery) -> str:
    """The PDF's file name, by the edition it holds: the report's edition when it is rendered.

    That can be newer than ``delivery.edition`` (the edition the delivery was queued for): a
    retry after an edit, or a download link opened after one, gets the current edition.
    """
    return f"{delivery.report.slug}-edition-{delivery.report.edition}.pdf"


# The module path before issue 23 moved it: the salt is part of every Message-ID, so it stays.
MESSAGE_ID_SALT = "backpain_report.emails.delivery_message_id"


def delivery_message_id(delivery: Delivery) -> str:
    """The delivery's Message-ID, ``<pk.hash@sender-domain>``: the same on every attempt.

    Derived from the delivery, not random per attempt, so if a duplicate of one delivery ever
    goes out, mail clients that de-duplicate by Message-ID show one message. The short keyed
    hash (HMAC with ``SECRET_KEY`` over the pk and creation time) keeps ids apart across sites
    sharing a sender domain and across a database whose primary keys start again; a resend is
    a new Delivery and so gets a new id.
    """
    domain = message_id_domain(app_settings.FROM_EMAIL or "") or DNS_NAME.get_fqdn()
    created = delivery.created_at.isoformat() if delivery.created_at else ""
    digest = salted_hmac(MESSAGE_ID_SALT, f"{delivery.pk}:{created}", algorithm="sha256")
    return MESSAGE_ID_FORMAT.format(pk=delivery.pk, digest=digest.hexdigest()[:16], domain=domain)


# Headers the app writes itself, all ASCII: sent verbatim on one line (see mailheaders).
RAW_HEADERS = ("Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted")


class DeliveryEmail(EmailMultiAlternatives):
    """An email whose headers go out alike on Django 5.2 and 6.1: the app's own ASCII headers
    verbatim (never RFC 2047 encoded or folded), the subject encoded only where it is not ASCII.
    """

    def message(self, **kwargs: Any) -> Any:
        message = super().message(**kwargs)
        raw = {name: str(self.extra_headers[name]) for name in RAW_HEADERS}
        headers_replace(message, raw=raw, text={"Subject": str(self.subject)})
        return message


def _message(
    delivery: Delivery, message_id: str, templates: tuple[str, str, str], **extra: object
) -> DeliveryEmail:
    """A text + HTML message to the delivery's subscriber, with the unsubscribe headers."""
    subscriber = delivery.subscriber
    context = {
        "delivery": delivery,
        "subscriber": subscriber,
        "report": delivery.report,
        "name": subscriber.name,
        "unsubscribe_url": links.unsubscribe_url(subscriber),
        "site_url": site.site_url(subscriber),  # ASCII, for links
        "site_host": site.site_host(subscriber),  # as people write it, for text
        "privacy_url": site.privacy_url(subscriber),
        **extra,
    }
    subject_template, text_template, html_template = templates
    message = DeliveryEmail(
        subject=" ".join(render_to_string(subject_template, context).split()),
        body=render_to_string(text_template, context),
        from_email=app_settings.FROM_EMAIL,
        to=[subscriber.email],
        headers={
            "Message-ID": message_id,
            "List-Unsubscribe": f"<{links.one_click_unsubscribe_url(subscriber)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(render_to_string(html_template, context), "text/html")
    return message


# Room for the bodies and headers next to the attachment, and base64's 4/3 growth.
_MESSAGE_OVERHEAD = 64 * 1024


def fits_in_email(pdf: bytes) -> bool:
    """Whether a message with this PDF attached stays under ``MAX_EMAIL_SIZE``."""
    return len(pdf) * 4 / 3 + _MESSAGE_OVERHEAD <= int(app_settings.MAX_EMAIL_SIZE)


def report_cover_url(delivery: Delivery) -> str:
    """The absolute URL of the report's cover PNG for the email, or "" when there is none to
    show: no site URL is known, or no published article offers the report (its cover's URL
    answers 404 then, and the email would show a broken picture)."""
    base = site.site_url(delivery.subscriber)
    if not base or not Article.objects.published().filter(report=delivery.report_id).exists():
        return ""
    return base + offer.cover_path(delivery.report)


def build_report_email(*, delivery: Delivery, pdf: bytes | None, message_id: str) -> DeliveryEmail:
    """The report message for one delivery, per the ``DELIVERY`` mode.

    ``pdf`` is attached in "attach" and "both" modes; "link" and "both" carry a signed download
    link (a button under the report's cover), and so does "attach" when the PDF would push the
    message over ``MAX_EMAIL_SIZE``. The cover shows in every mode.
    """
    mode = app_settings.DELIVERY
    attach = pdf is not None and mode in ("attach", "both") and fits_in_email(pdf)
    link = mode in ("link", "both") or not attach
    templates = (SUBJECT_TEMPLATE, TEXT_TEMPLATE, HTML_TEMPLATE)
    message = _message(
        delivery,
        message_id,
        templates,
        attached=attach,
        cover_url=report_cover_url(delivery),
        download_url=links.download_url(delivery) if link else "",
        download_days=max(1, int(app_settings.DOWNLOAD_MAX_AGE) // 86400),
    )
    if attach:
        message.attach(pdf_filename(delivery), pdf, "application/pdf")
    return message


def build_confirmation_email(*, delivery: Delivery, message_id: str) -> DeliveryEmail:
    """The double opt-in message: one button that leads to the confirm page.

    It goes to an address nobody has confirmed yet, so it carries nothing the sign-up form let
    the sender choose: no name (``name`` is empty in its templates' context).
    """
    templates = (CONFIRM_SUBJECT_TEMPLATE, CONFIRM_TEXT_TEMPLATE, CONFIRM_HTML_TEMPLATE)
    return _message(
        delivery,
        message_id,
        templates,
        name="",
        confirm_url=links.confirm_url(delivery.subscriber),
        confirm_days=max(1, int(app_settings.CONFIRM_MAX_AGE) // 86400),
    )


def followup_text(step: FollowUpStep, edition: int) -> tuple[str, str]:
    """The subject and Markdown body of ``step``'s ``edition``: the step's own text for its
    current edition, else the snapshot kept when it was edited (the current text if none)."""
    if edition != step.edition:
        kept = FollowUpEdition.objects.filter(step=step, edition=edition).first()
        if kept is not None:
            return kept.subject, kept.body
    return step.subject, step.body


def build_followup_email(*, delivery: Delivery, message_id: str) -> DeliveryEmail:
    """A follow-up step's message: the subject and Markdown body of the edition the delivery
    was made for, the body sanitised as the report's is (HTML) and as written (text), with the
    unsubscribe link and headers of every email. Call it in the reader's language."""
    step = delivery.step
    assert step is not None, "a follow-up delivery has a step"
    subject, body = followup_text(step, delivery.edition)
    templates = (FOLLOWUP_SUBJECT_TEMPLATE, FOLLOWUP_TEXT_TEMPLATE, FOLLOWUP_HTML_TEMPLATE)
    return _message(
        delivery,
        message_id,
        templates,
        step=step,
        subject=subject,
        body_text=body.strip(),
        body_html=render_markdown(body),
    )
