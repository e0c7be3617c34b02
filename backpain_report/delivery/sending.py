"""Send one delivery: claim the row, render the PDF, send the email, record the outcome.

A claim is a conditional UPDATE (pending -> sending, or a sending claim older than the lease), so
two workers handed the same message send once. Right before the message is handed to the mail
server the claim is re-checked and renewed (another conditional UPDATE, which also requires the
reader to be still subscribed and not suppressed): a worker whose claim was taken over meanwhile
sends nothing, and a reader who unsubscribed (or whose address was suppressed) during the render
is sent nothing (their row ends cancelled, the reason in ``last_error``). Temporary
failures put the row back to pending with ``next_attempt_at`` set by exponential backoff with
jitter; permanent ones (SMTP 5xx) and exhausted attempts mark it failed: the policy is
:mod:`backpain_report.delivery.retry`'s, this module records it. Every failure is written to
``last_error``.

A reclaim counts as an attempt; a stale claim that already used ``MAX_ATTEMPTS`` is failed
("Worker lost while sending ...") instead of reclaimed, so a message that kills its worker is
not retried forever.

An outcome is recorded only while the run's claim stands. A run whose claim no longer stands
(taken over by another run, or the row cancelled) reports SKIPPED, never SENT, sends no
``report_delivered`` and logs a warning naming only the delivery id. If that is found after the
server accepted the message (the claim is renewed right before the hand-over, so only when
handing it over outlasted the lease), the email went out once and the new claim may send it
again, with the same Message-ID.
"""

from __future__ import annotations

import datetime
import enum
import logging
import operator
import smtplib
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any

from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone, translation

from .. import signals
from ..conf import app_settings
from ..models import Delivery, FollowUpStep, Subscriber
from ..report.pdfstore import (
    PdfNoLongerWanted,
    delivery_pdf,
    delivery_pdf_save,
    delivery_prepared_on,
)
from ..rights.addresses import email_masked
from ..rights.consent import (
    ALREADY_CONFIRMED_ERROR,
    UNCONFIRMED_ERROR,
    awaiting_confirmation_q,
    awaits_confirmation,
)
from ..rights.suppression import suppressed_error
from ..webhooks.events import EventType
from ..webhooks.outbox import events_record
from .emails import (
    build_confirmation_email,
    build_followup_email,
    build_report_email,
    delivery_message_id,
    fits_in_email,
)
from .mailer import open_mailer
from .retry import (
    EARLY_ARRIVAL_SLACK,
    attempt_due,
    failure_decide,
    stale_claim_exhausted,
    stale_claim_reclaimable,
    worker_lost_error,
)

logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    SENT = "sent"
    # Not claimable (already sent, being sent, cancelled or not yet due), or the claim was lost.
    SKIPPED = "skipped"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    outcome: Outcome
    retry_in: float | None = None
    error: str = ""
    connection_lost: bool = False


def stale_claims_fail(
    queryset: QuerySet[Any], *, now: datetime.datetime, what: str = "deliveries"
) -> int:
    """Fail the exhausted stale claims among ``queryset`` (outbox rows: deliveries, or webhook
    events, named by ``what`` in the log); return how many.

    ``last_error`` reads e.g. "Worker lost while sending (claim expired); giving up after 5
    attempts."
    """
    failed = queryset.filter(stale_claim_exhausted(now)).update(
        status=Delivery.Status.FAILED, last_error=worker_lost_error()
    )
    if failed:
        logger.warning("%s %s failed: their worker was lost on the last attempt", failed, what)
    return failed


def delivery_claim(*, delivery_id: int) -> Delivery | None:
    """Atomically take a delivery for sending; None when another run has it or it is done.

    A stale claim whose attempts are used up is failed here instead of being taken.
    """
    now = timezone.now()
    due = attempt_due(now, slack=EARLY_ARRIVAL_SLACK)
    claimable = (Q(status=Delivery.Status.PENDING) & due) | stale_claim_reclaimable(now)
    claimed = Delivery.objects.filter(claimable, pk=delivery_id).update(
        status=Delivery.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
    )
    if not claimed:
        stale_claims_fail(Delivery.objects.filter(pk=delivery_id), now=now)
        return None
    return Delivery.objects.select_related("subscriber", "report", "step").get(pk=delivery_id)


UNSUBSCRIBED_ERROR = "Unsubscribed before sending."
#: ``last_error`` of a follow-up not sent because the reader's consent did not name follow-ups.
FOLLOWUPS_NOT_AGREED_ERROR = "Not sent: the reader did not agree to follow-up emails."
#: ``last_error`` of a follow-up not sent because its step or its sequence was switched off.
FOLLOWUP_OFF_ERROR = "Not sent: the follow-up step or its sequence is switched off."


def _step_on(delivery: Delivery) -> bool:
    """Whether a follow-up's step is active and its report's sequence on (read now)."""
    if delivery.step_id is None:
        return False
    return FollowUpStep.objects.filter(
        pk=delivery.step_id, is_active=True, report__followups_enabled=True
    ).exists()


def _may_not_send(delivery: Delivery) -> bool:
    """Whether the claimed ``delivery`` may not go to its reader: the rules of :func:`_stops`,
    written again for the row in hand (no query for a report or a confirmation;
    tests/test_send_rules.py holds the two to the same answers), before any work is spent on
    the message; the renewal before the SMTP hand-over checks them in the database."""
    subscriber = delivery.subscriber
    if not subscriber.is_subscribed or subscriber.is_suppressed:
        return True
    if delivery.kind == Delivery.Kind.CONFIRMATION:
        return subscriber.confirmed_at is not None  # nothing left to ask
    if awaits_confirmation(subscriber):  # only the confirmation goes before it
        return True
    if delivery.kind == Delivery.Kind.FOLLOWUP:
        return not subscriber.followups_consented or not _step_on(delivery)
    return False


def _subscriber_is(*conditions: Q, **lookups: Any) -> Q:
    """A filter on ``Delivery``: its reader matches (a correlated subquery, not a join, so a
    conditional UPDATE keeps its own row's conditions, which PostgreSQL re-checks on a row
    another transaction changed)."""
    reader = Subscriber.objects.filter(*conditions, pk=OuterRef("subscriber_id"), **lookups)
    return Q(Exists(reader))


#: The ``last_error`` placeholder of a suppression: :func:`_stop_error` names its kind.
_SUPPRESSED = "suppressed"


def _stops(kind: str) -> list[tuple[Q, str]]:
    """Why a delivery of ``kind`` may not go to its reader, in the order a reason is given:
    each a filter on ``Delivery`` that holds when it applies, and the ``last_error`` recorded.

    The one rule of who may be written to: the claim's renewal (:func:`_claim_renew`) requires
    that none holds, and a cancelled row names the first that does (:func:`_stop_error`)."""
    stops = [
        (_subscriber_is(suppressed_at__isnull=False), _SUPPRESSED),
        (_subscriber_is(unsubscribed_at__isnull=False), UNSUBSCRIBED_ERROR),
    ]
    if kind == Delivery.Kind.CONFIRMATION:  # nothing left to ask
        stops.append((_subscriber_is(confirmed_at__isnull=False), ALREADY_CONFIRMED_ERROR))
    else:  # a report or follow-up under double opt-in: not before the confirmation
        stops.append((_subscriber_is(awaiting_confirmation_q()), UNCONFIRMED_ERROR))
    if kind == Delivery.Kind.FOLLOWUP:  # agreed to, and its step and sequence still on
        step_on = FollowUpStep.objects.filter(
            pk=OuterRef("step_id"), is_active=True, report__followups_enabled=True
        )
        stops += [
            (_subscriber_is(followups_consented=False), FOLLOWUPS_NOT_AGREED_ERROR),
            (Q(~Exists(step_on)), FOLLOWUP_OFF_ERROR),
        ]
    return stops


def _claim_renew(delivery: Delivery) -> bool:
    """Re-check our claim and restart its lease, in one conditional UPDATE.

    False when the claim no longer stands (another run took the row, or it was cancelled) or one
    of :func:`_stops` holds (the reader unsubscribed, was suppressed, ...): unsubscribing and
    suppressing cancel only pending rows, as a row being sent belongs to its worker, so the
    worker stops here (see :func:`_stop_before_sending`).
    """
    now = timezone.now()
    renewed = (
        Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.Status.SENDING, claimed_at=delivery.claimed_at
        )
        .exclude(reduce(operator.or_, (stop for stop, _error in _stops(delivery.kind))))
        .update(claimed_at=now)
    )
    if renewed:
        delivery.claimed_at = now
    return bool(renewed)


def _record(delivery: Delivery, **fields: Any) -> bool:
    """Write the outcome only if our claim still stands (it may have been reclaimed)."""
    return bool(
        Delivery.objects.filter(
            pk=delivery.pk, status=Delivery.Status.SENDING, claimed_at=delivery.claimed_at
        ).update(**fields)
    )


def _claim_lost(
    delivery: Delivery, *, sent: bool, error: str = "", connection_lost: bool = False
) -> SendResult:
    """The result of a run whose claim no longer stands (taken over, or the row cancelled).

    Nothing is recorded (the row is someone else's now) and the outcome is SKIPPED, never SENT.
    """
    if sent:
        logger.warning(
            "Delivery %s was handed to the mail server, but its claim no longer stood; "
            "the outcome is not recorded",
            delivery.pk,
        )
    else:
        logger.warning("Delivery %s: the claim no longer stands; nothing recorded", delivery.pk)
    return SendResult(delivery.pk, Outcome.SKIPPED, error=error, connection_lost=connection_lost)


def _stop_error(delivery: Delivery) -> str:
    """Why a delivery whose claim stands may not be sent: the first of :func:`_stops` that
    holds (one query), else unsubscribing."""
    reason = Case(
        *(When(stop, then=Value(error)) for stop, error in _stops(delivery.kind)),
        default=Value(UNSUBSCRIBED_ERROR),
    )
    row = (
        Delivery.objects.filter(pk=delivery.pk)
        .values_list(reason, "subscriber__suppressed_reason")  # one snapshot for both
        .first()
    )
    if row is None:  # the row went meanwhile (its reader deleted)
        return UNSUBSCRIBED_ERROR
    error, suppressed_reason = row
    return suppressed_error(suppressed_reason) if error == _SUPPRESSED else error


def _stop_before_sending(delivery: Delivery) -> SendResult:
    """Send nothing: the reader unsubscribed, their address is suppressed, a report's reader
    has not confirmed (double opt-in), a follow-up may not go (see :func:`_may_not_send`), or
    :func:`_claim_renew` failed.

    If our claim still stands, one of the others holds (the renewal requires all of them):
    the row is cancelled, with the reason as its error. Otherwise the claim is gone and nothing
    is recorded. Either way SKIPPED.
    """
    error = _stop_error(delivery)
    if _record(delivery, status=Delivery.Status.CANCELLED, last_error=error):
        logger.info("Delivery %s cancelled before sending: %s", delivery.pk, error)
        return SendResult(delivery.pk, Outcome.SKIPPED)
    return _claim_lost(delivery, sent=False)


def _record_failure(delivery: Delivery, exc: BaseException) -> SendResult:
    """Record a failed attempt as :func:`~backpain_report.delivery.retry.failure_decide` decides."""
    decision = failure_decide(attempts=delivery.attempts, exc=exc)
    error, lost = decision.error, decision.connection_lost
    if decision.give_up:
        if not _record(delivery, status=Delivery.Status.FAILED, last_error=error):
            return _claim_lost(delivery, sent=False, error=error, connection_lost=lost)
        logger.warning("Delivery %s failed: %s", delivery.pk, type(exc).__name__)
        return SendResult(delivery.pk, Outcome.FAILED, error=error, connection_lost=lost)
    delay = float(decision.retry_in or 0)
    recorded = _record(
        delivery,
        status=Delivery.Status.PENDING,
        last_error=error,
        next_attempt_at=timezone.now() + datetime.timedelta(seconds=delay),
    )
    if not recorded:
        return _claim_lost(delivery, sent=False, error=error, connection_lost=lost)
    logger.info("Delivery %s will retry in %.0f s: %s", delivery.pk, delay, type(exc).__name__)
    return SendResult(delivery.pk, Outcome.RETRY, retry_in=delay, error=error, connection_lost=lost)


def deliveries_send(*, delivery_ids: list[int]) -> list[SendResult]:
    """Send several deliveries over one mail connection, reopened if the server drops it.

    Each delivery is claimed and recorded on its own, so a connection lost mid-batch fails only
    the message in flight (which then retries); nothing already sent is sent again.
    """
    results: list[SendResult] = []
    mailer = open_mailer()
    try:
        for delivery_id in delivery_ids:
            result = delivery_send(delivery_id=delivery_id, connection=mailer)
            results.append(result)
            if result.outcome is not Outcome.SENT and result.connection_lost:
                _close_quietly(mailer)
    finally:
        _close_quietly(mailer)
    return results


def _store_for_link(delivery: Delivery, pdf: bytes, language: str) -> bool:
    """Keep the PDF (in the email's ``language``) a download link will serve, so the web
    process never renders it.

    Once the file is written the claim is re-checked and renewed (:func:`_claim_renew`): if the
    delivery may no longer be sent (its reader was erased or unsubscribed during the render, or
    the claim was taken over), the file is deleted again and False is returned, so an erasure
    racing the render leaves no PDF with the reader's name, whichever commits first (the
    orderings are in :func:`~backpain_report.report.pdfstore.delivery_pdf_save`). A claim taken over
    costs the new run's link one render on its first download (the file may be the same).

    A storage error is logged, not raised (True): the link then renders on its first download.
    """
    try:
        delivery_pdf_save(
            delivery,
            pdf,
            delivery_prepared_on(delivery),
            language=language,
            still_wanted=lambda: _claim_renew(delivery),
        )
    except PdfNoLongerWanted:
        return False
    except Exception:  # the email still goes; the download renders lazily
        logger.warning("Could not store the PDF of delivery %s", delivery.pk, exc_info=True)
    return True


def _build_message(delivery: Delivery, message_id: str) -> Any | None:
    """The email for ``delivery`` in the reader's language; None when it stopped while its PDF
    was stored for a link."""
    language = delivery.subscriber.writing_language()
    with translation.override(language):
        return _build_message_now(delivery, message_id, language)


def _build_message_now(delivery: Delivery, message_id: str, language: str) -> Any | None:
    if delivery.kind == Delivery.Kind.CONFIRMATION:
        return build_confirmation_email(delivery=delivery, message_id=message_id)
    if delivery.kind == Delivery.Kind.FOLLOWUP:
        return build_followup_email(delivery=delivery, message_id=message_id)
    mode = app_settings.DELIVERY
    pdf = delivery_pdf(delivery)  # in the reader's language, as the email
    carries_link = mode != "attach" or not fits_in_email(pdf)
    if carries_link and not _store_for_link(delivery, pdf, language):
        return None
    return build_report_email(
        delivery=delivery, pdf=pdf if mode != "link" else None, message_id=message_id
    )


def _log_sent(delivery: Delivery, seconds: float) -> None:
    """One INFO line per message sent: ``sent report 42 to m…@example.com in 0.21 s`` (the
    address masked; a confirmation email is a "confirmation request")."""
    what = {
        Delivery.Kind.REPORT: "report",
        Delivery.Kind.FOLLOWUP: "follow-up",
    }.get(Delivery.Kind(delivery.kind), "confirmation request")
    address = email_masked(delivery.subscriber.email)
    logger.info("sent %s %s to %s in %.2f s", what, delivery.pk, address, seconds)


def _close_quietly(mailer: Any) -> None:
    try:
        mailer.close()
    except Exception:
        logger.debug("Ignoring an error while closing the mail connection", exc_info=True)


def delivery_send(*, delivery_id: int, connection: Any = None) -> SendResult:
    """Send one delivery if it can be claimed; never raises for a delivery failure.

    ``connection`` is an open email backend to reuse across a batch; one is opened otherwise.
    The claim is renewed right before the message is handed to the backend; a run that finds it
    taken over, or its reader unsubscribed or suppressed, sends nothing and reports SKIPPED.
    """
    started = time.monotonic()
    delivery = delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        return SendResult(delivery_id, Outcome.SKIPPED)
    if _may_not_send(delivery):
        return _stop_before_sending(delivery)
    message_id = delivery_message_id(delivery)
    mailer = connection
    try:
        message = _build_message(delivery, message_id)
        if message is None:  # erased, unsubscribed or taken over while its PDF was stored
            return _stop_before_sending(delivery)
        if mailer is None:
            mailer = open_mailer()
        # Open it ourselves: send_messages() then leaves it open (for the next message of a
        # batch; it closes only connections it opened). A no-op when already open.
        mailer.open()
        if not _claim_renew(delivery):  # taken over, cancelled, or the reader unsubscribed
            return _stop_before_sending(delivery)
        if not mailer.send_messages([message]):
            raise smtplib.SMTPException("The mail backend accepted no message.")
    except Exception as exc:  # noqa: BLE001 - recorded on the row, then retried or failed
        return _record_failure(delivery, exc)
    finally:
        if connection is None and mailer is not None:
            _close_quietly(mailer)
    with transaction.atomic():  # the event exists exactly when the sending is recorded
        recorded = _record(
            delivery,
            status=Delivery.Status.SENT,
            sent_at=timezone.now(),
            message_id=message_id,
            last_error="",
        )
        if recorded and delivery.kind == Delivery.Kind.REPORT:
            events_record(
                EventType.REPORT_DELIVERED,
                delivery.subscriber,
                report=delivery.report,
                edition=delivery.edition,
            )
    if not recorded:
        return _claim_lost(delivery, sent=True)
    _log_sent(delivery, time.monotonic() - started)
    if delivery.kind == Delivery.Kind.REPORT:
        signals.send_robustly(signals.report_delivered, sender=Delivery, delivery=delivery)
    return SendResult(delivery_id, Outcome.SENT)
