"""A follow-up step's email for a sample reader: the admin's preview and its "send a test to me".

Built by :func:`~backpain_report.delivery.emails.build_followup_email`, the function that builds
the real email, from an unsaved delivery to an unsaved sample reader who writes in the step's
language. Nothing is written to the database: a test goes to a member of staff, not to a
subscriber, and is no :class:`~backpain_report.models.Delivery`. Its unsubscribe link names no
subscriber (the unsubscribe page answers that the link is not valid).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.mail import make_msgid
from django.core.mail.utils import DNS_NAME
from django.utils import timezone, translation

from ..conf import app_settings
from ..config.validators import message_id_domain
from ..delivery.emails import DeliveryEmail, build_followup_email
from ..delivery.mailer import open_mailer
from ..models import Delivery, FollowUpStep, Subscriber

#: The sample reader's name in previews and tests (as on the report's PDF preview).
SAMPLE_READER = "Sam Sample"
SAMPLE_ADDRESS = "sam.sample@example.com"


@dataclass(frozen=True)
class FollowUpSample:
    """What a reader of the step gets: the subject, the HTML body and the text body."""

    subject: str
    html: str
    text: str
    language: str


def followup_sample_language(step: FollowUpStep) -> str:
    """The language the step is written for: its own, or the site's for a step for everyone."""
    return step.language or settings.LANGUAGE_CODE


def followup_sample_email(
    *, step: FollowUpStep, to: str = SAMPLE_ADDRESS, site_url: str = ""
) -> DeliveryEmail:
    """The step's current edition as a sample reader in its language gets it.

    ``site_url`` (e.g. the admin's own origin) stands in for the page the sample reader
    signed up on, so the email's links are absolute when ``SITE_URL`` is not set.
    """
    language = followup_sample_language(step)
    reader = Subscriber(
        email=to,
        email_canonical=to.lower(),
        name=SAMPLE_READER,
        language=language,
        source_url=site_url,
        followups_consented=True,
        created_at=timezone.now(),
    )
    delivery = Delivery(
        subscriber=reader,
        report=step.report,
        step=step,
        kind=Delivery.Kind.FOLLOWUP,
        edition=step.edition,
        created_at=timezone.now(),
    )
    domain = message_id_domain(app_settings.FROM_EMAIL or "") or DNS_NAME.get_fqdn()
    with translation.override(language):
        return build_followup_email(delivery=delivery, message_id=make_msgid(domain=domain))


def followup_sample(*, step: FollowUpStep, site_url: str = "") -> FollowUpSample:
    """The preview's parts of :func:`followup_sample_email`."""
    message = followup_sample_email(step=step, site_url=site_url)
    html = next((body for body, mime in message.alternatives if mime == "text/html"), "")
    return FollowUpSample(
        subject=str(message.subject),
        html=str(html),
        text=str(message.body),
        language=followup_sample_language(step),
    )


def followup_test_send(*, step: FollowUpStep, to: str, site_url: str = "") -> None:
    """Send the step's email, as a sample reader gets it, to ``to`` (a member of staff)
    through the site's mailer; raises what the mailer raises."""
    if not to:
        raise ValueError("followup_test_send needs an address")
    message = followup_sample_email(step=step, to=to, site_url=site_url)
    connection = open_mailer()
    connection.send_messages([message])


__all__ = [
    "SAMPLE_READER",
    "FollowUpSample",
    "followup_sample",
    "followup_sample_email",
    "followup_sample_language",
    "followup_test_send",
]
