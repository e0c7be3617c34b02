"""A subscriber's story, oldest first: sign-up, consent, each delivery's steps (a follow-up
named by its step and the subject its reader got), unsubscribe, bounces and complaints,
suppression."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.utils.translation import gettext as _

from ..models import Delivery, FollowUpEdition, MailEvent, Subscriber

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


def delivery_label(delivery: Delivery, subjects: dict[tuple[int, int], str] | None = None) -> str:
    """What the delivery sent: "Report #12 (sign-up, edition 2)", or for a follow-up
    "Follow-up 2: <the subject its reader got> (edition 1)"; ``subjects`` holds the subjects
    of earlier editions by ``(step id, edition)``."""
    step = delivery.step if delivery.kind == Delivery.Kind.FOLLOWUP else None
    if step is None:
        return _("%(kind)s #%(id)d (%(reason)s, edition %(edition)d)") % {
            "kind": delivery.get_kind_display(),
            "id": delivery.pk,
            "reason": delivery.get_reason_display(),
            "edition": delivery.edition,
        }
    subject = step.subject
    if delivery.edition != step.edition:
        subject = (subjects or {}).get((step.pk, delivery.edition), subject)
    return _("Follow-up %(position)d: %(subject)s (edition %(edition)d)") % {
        "position": step.position,
        "subject": subject,
        "edition": delivery.edition,
    }


def earlier_subjects(deliveries: list[Delivery]) -> dict[tuple[int, int], str]:
    """The subjects of the earlier step editions these follow-ups sent (one query, or none)."""
    wanted = {
        (d.step_id, d.edition)
        for d in deliveries
        if d.step_id is not None and d.step is not None and d.edition != d.step.edition
    }
    if not wanted:
        return {}
    rows = FollowUpEdition.objects.filter(
        step_id__in={step for step, _edition in wanted},
        edition__in={edition for _step, edition in wanted},
    ).values_list("step_id", "edition", "subject")
    return {(step, edition): subject for step, edition, subject in rows}


def _delivery_events(delivery: Delivery, label: str) -> list[TimelineEvent]:
    pk = delivery.pk
    if delivery.kind == Delivery.Kind.FOLLOWUP:  # its status with it: the step is the story
        what = _("Follow-up scheduled")
        label = _("%(label)s, now: %(status)s") % {
            "label": label,
            "status": delivery.get_status_display(),
        }
    else:
        what = _("Created")
    events = [TimelineEvent(delivery.created_at, what, label, pk)]
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
    deliveries, oldest first (2 queries; a third when a follow-up sent an earlier edition)."""
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
    latest = list(
        subscriber.deliveries.select_related("step").order_by("-created_at", "-pk")[:MAX_DELIVERIES]
    )
    subjects = earlier_subjects(latest)
    for delivery in latest:
        events.extend(_delivery_events(delivery, delivery_label(delivery, subjects)))
    return sorted(events, key=lambda event: event.when)
