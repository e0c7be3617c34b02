"""A subscriber's story, oldest first: sign-up, consent, each delivery's steps, unsubscribe,
bounces and complaints, suppression."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.utils.translation import gettext as _

from ..models import Delivery, MailEvent, Subscriber

#: At most this many deliveries are shown (the most recent); the inline lists them all.
MAX_DELIVERIES = 50
#: At most this many bounces and complaints are shown (the most recent).
MAX_MAIL_EVENTS = 50


@dataclass(frozen=True)
class TimelineEvent:
    when: datetime.datetime
    what: str
    detail: str = ""
    delivery_id: int | None = None
    problem: bool = False


def _delivery_events(delivery: Delivery) -> list[TimelineEvent]:
    label = _("%(kind)s #%(id)d (%(reason)s, edition %(edition)d)") % {
        "kind": delivery.get_kind_display(),
        "id": delivery.pk,
        "reason": delivery.get_reason_display(),
        "edition": delivery.edition,
    }
    pk = delivery.pk
    events = [TimelineEvent(delivery.created_at, _("Created"), label, pk)]
    if delivery.enqueued_at:
        events.append(TimelineEvent(delivery.enqueued_at, _("Queued for the worker"), "", pk))
    if delivery.publish_failed_at:
        events.append(
            TimelineEvent(
                delivery.publish_failed_at,
                _("Broker unavailable"),
                _("left for the sweep"),
                pk,
                problem=True,
            )
        )
    if delivery.claimed_at:
        detail = _("attempt %(n)d") % {"n": delivery.attempts}
        events.append(TimelineEvent(delivery.claimed_at, _("Sending"), detail, pk))
    if delivery.last_error:
        detail = _("after %(n)d attempt(s): %(error)s") % {
            "n": delivery.attempts,
            "error": delivery.last_error,
        }
        events.append(TimelineEvent(delivery.updated_at, _("Last error"), detail, pk, True))
    if delivery.sent_at:
        events.append(TimelineEvent(delivery.sent_at, _("Sent"), delivery.message_id, pk))
    if delivery.downloaded_at:
        events.append(TimelineEvent(delivery.downloaded_at, _("Downloaded"), "", pk))
    if delivery.status in (Delivery.Status.FAILED, Delivery.Status.CANCELLED):
        events.append(
            TimelineEvent(delivery.updated_at, delivery.get_status_display(), "", pk, True)
        )
    return events


def timeline_events(subscriber: Subscriber) -> list[TimelineEvent]:
    """Every dated event of ``subscriber``, its latest bounces and complaints and its latest
    deliveries, oldest first (2 queries)."""
    events = [TimelineEvent(subscriber.created_at, _("Signed up"), subscriber.source_url)]
    if subscriber.consented_at:
        version = _("consent version %(v)s") % {"v": subscriber.consent_version or "—"}
        events.append(TimelineEvent(subscriber.consented_at, _("Consent given"), version))
    if subscriber.confirmed_at:
        events.append(TimelineEvent(subscriber.confirmed_at, _("Confirmed the address")))
    if subscriber.unsubscribed_at:
        events.append(TimelineEvent(subscriber.unsubscribed_at, _("Unsubscribed")))
    if subscriber.suppressed_at:
        events.append(
            TimelineEvent(
                subscriber.suppressed_at,
                _("Suppressed: nothing is sent to this address"),
                subscriber.suppressed_reason,
                problem=True,
            )
        )
    if subscriber.suppression_lifted_at:
        events.append(TimelineEvent(subscriber.suppression_lifted_at, _("Suppression lifted")))
    reported = subscriber.mail_events.order_by("-occurred_at", "-pk")[:MAX_MAIL_EVENTS]
    for event in reported:
        what = _("%(kind)s reported by %(esp)s") % {
            "kind": event.get_kind_display(),
            "esp": event.esp,
        }
        problem = event.kind != MailEvent.Kind.SOFT_BOUNCE
        events.append(
            TimelineEvent(event.occurred_at, what, event.description, event.delivery_id, problem)
        )
    latest = subscriber.deliveries.order_by("-created_at", "-pk")[:MAX_DELIVERIES]
    for delivery in latest:
        events.extend(_delivery_events(delivery))
    return sorted(events, key=lambda event: event.when)
