"""The retry policy: when a failed or abandoned delivery is tried again, and when it is given up.

One module decides it for the sender (:mod:`backpain_report.delivery.sending`), the tasks
(:mod:`backpain_report.tasks`) and the sweep (:mod:`backpain_report.delivery.sweep`):

- **permanent or temporary**: SMTP 5xx answers are permanent (the delivery fails at once); 4xx
  answers, timeouts and connection errors are temporary (:func:`is_permanent`);
- **connection errors**: after one, an SMTP connection is not trusted for the next message of a
  batch (:data:`CONNECTION_ERRORS`);
- **backoff**: a temporary failure is retried after :func:`retry_delay` (exponential, with full
  jitter, capped by ``RETRY_BACKOFF_MAX``), until ``MAX_ATTEMPTS`` is used up
  (:func:`failure_decide`);
- **due**: a pending row is due once its ``next_attempt_at`` has passed (:func:`attempt_due`);
- **lease**: a ``sending`` claim older than ``CLAIM_LEASE`` was abandoned (its worker died or
  hung); it is claimed again as a new attempt while attempts are left
  (:func:`stale_claim_reclaimable`), else failed with :func:`worker_lost_error`;
- **redelivery**: each task's message is acknowledged only after the task ran and delivered
  again when its worker is lost (:data:`TASK_OPTIONS`).

Nothing here writes a row or talks to a broker: it answers questions the others act on.
"""

from __future__ import annotations

import datetime
import random
import smtplib
from dataclasses import dataclass
from typing import TypedDict

from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Concat

from ..conf import app_settings
from ..models import Delivery


#: How every delivery and sign-up task is run: acknowledged once it ran, delivered again (to
#: another worker) when its worker is lost mid-task; the row's claim makes a second run harmless.
class TaskOptions(TypedDict):
    """The Celery task options of :data:`TASK_OPTIONS` (typed so ``**`` checks against
    ``shared_task``'s keywords)."""

    acks_late: bool
    reject_on_worker_lost: bool
    ignore_result: bool


TASK_OPTIONS: TaskOptions = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
}

# A retry message may arrive a little before next_attempt_at: accept it within this slack.
EARLY_ARRIVAL_SLACK = datetime.timedelta(seconds=2)

# Errors after which an SMTP connection cannot be trusted for the next message.
CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, OSError)

WORKER_LOST_ERROR = "Worker lost while sending (claim expired); giving up after "


class PermanentDeliveryError(Exception):
    """The message can never be delivered as it is (e.g. SMTP 5xx)."""


def retry_delay(attempts: int) -> float:
    """Exponential backoff with full jitter for the attempt that just failed (1-based)."""
    base = float(app_settings.RETRY_BACKOFF)
    cap = float(app_settings.RETRY_BACKOFF_MAX)
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not cryptography


def is_permanent(exc: BaseException) -> bool:
    """SMTP 5xx answers are permanent; 4xx, timeouts and connection errors are not."""
    if isinstance(exc, PermanentDeliveryError):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return 500 <= exc.smtp_code < 600
    return False


def describe_error(exc: BaseException) -> str:
    """The failure as kept in ``last_error``: the SMTP code and answer, else the exception."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"SMTP {exc.smtp_code}: {text}"[:2000]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return (
            "SMTP recipient refused: "
            + "; ".join(
                f"{code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
                for code, msg in exc.recipients.values()
            )[:2000]
        )
    return f"{type(exc).__name__}: {exc}"[:2000]


@dataclass(frozen=True)
class FailureDecision:
    """What to do after a failed attempt: give up, or retry in ``retry_in`` seconds."""

    error: str  # for ``last_error``
    give_up: bool
    retry_in: float | None = None
    connection_lost: bool = False  # the connection is not reused for the next message


def failure_decide(*, attempts: int, exc: BaseException) -> FailureDecision:
    """Give up on a permanent failure or once ``MAX_ATTEMPTS`` are used; else back off."""
    error = describe_error(exc)
    lost = isinstance(exc, CONNECTION_ERRORS)
    if is_permanent(exc) or attempts >= int(app_settings.MAX_ATTEMPTS):
        return FailureDecision(error=error, give_up=True, connection_lost=lost)
    return FailureDecision(
        error=error, give_up=False, retry_in=retry_delay(attempts), connection_lost=lost
    )


def attempt_due(now: datetime.datetime, *, slack: datetime.timedelta | None = None) -> Q:
    """A row whose next attempt is due at ``now`` (or within ``slack`` of it)."""
    until = now + slack if slack else now
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=until)


def _stale(now: datetime.datetime) -> Q:
    """A ``sending`` claim older than the lease: its worker died or hung."""
    lease = datetime.timedelta(seconds=float(app_settings.CLAIM_LEASE))
    return Q(status=Delivery.Status.SENDING, claimed_at__lt=now - lease)


def stale_claim_reclaimable(now: datetime.datetime) -> Q:
    """A stale claim with attempts left: it may be claimed again (and the sweep re-publishes it)."""
    return _stale(now) & Q(attempts__lt=int(app_settings.MAX_ATTEMPTS))


def stale_claim_exhausted(now: datetime.datetime) -> Q:
    """A stale claim that used the last attempt: it is failed, never reclaimed."""
    return _stale(now) & Q(attempts__gte=int(app_settings.MAX_ATTEMPTS))


def worker_lost_error() -> Concat:
    """``last_error`` of an exhausted stale claim, as a database expression: e.g. "Worker lost
    while sending (claim expired); giving up after 5 attempts."."""
    return Concat(
        Value(WORKER_LOST_ERROR),
        Cast("attempts", output_field=CharField()),
        Value(" attempts."),
        output_field=CharField(),
    )
