"""Tell the workers about sign-ups and deliveries (through :mod:`backpain_report.broker`).

The Delivery row is the source of truth; a message only says "look at row N". Publishing is
bounded (short socket and connect timeouts, no retry loop), so a sick broker costs a sign-up about
``PUBLISH_TIMEOUT`` seconds at most. A delivery whose publish failed stays pending, is marked
``publish_failed_at`` and is sent by the sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from ..broker import Message, rows_publish
from ..models import Delivery, PendingSignup

logger = logging.getLogger(__name__)

DELIVER_TASK = "backpain_report.deliver_report"
DELIVER_BATCH_TASK = "backpain_report.deliver_batch"
SWEEP_TASK = "backpain_report.sweep_deliveries"
SIGNUP_TASK = "backpain_report.process_signup"
# Deliveries per batch message: one SMTP connection each, small enough to spread over workers.
BATCH_SIZE = 20


def _publish(
    messages: list[Message],
    countdown: float | None,
    model: type[Delivery] | type[PendingSignup] = Delivery,
    *,
    record_sent: bool = True,
) -> int:
    """Publish ``messages`` for ``model`` rows (deliveries unless said) on the default queue."""
    return rows_publish(messages, countdown, model, record_sent=record_sent)


def publish_deliveries(delivery_ids: Iterable[int], *, countdown: float | None = None) -> int:
    """Publish one message per delivery over one bounded connection; return how many went.

    Failures are recorded on the rows (``publish_failed_at``), never raised: the sweep retries.
    """
    return _publish([(DELIVER_TASK, [pk], [pk]) for pk in delivery_ids], countdown)


def publish_batches(delivery_ids: Iterable[int], *, record_sent: bool = True) -> int:
    """Publish deliveries in batch messages of ``BATCH_SIZE`` (one SMTP connection each).

    A single delivery goes as an ordinary ``deliver_report`` message. Returns how many were
    published; failures are recorded as in :func:`publish_deliveries`. ``record_sent=False``:
    the rows were stamped ``enqueued_at`` when written, so only failures cost an UPDATE.
    """
    ids = list(delivery_ids)
    if len(ids) == 1:
        return _publish([(DELIVER_TASK, ids, ids)], None, record_sent=record_sent)
    batches = [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]
    messages: list[Message] = [(DELIVER_BATCH_TASK, [batch], batch) for batch in batches]
    return _publish(messages, None, record_sent=record_sent)


def publish_delivery(delivery_id: int, *, countdown: float | None = None) -> bool:
    """Publish the message for one delivery; False when the broker could not take it."""
    return publish_deliveries([delivery_id], countdown=countdown) == 1


def publish_on_commit(*delivery_ids: int, record_sent: bool = True) -> None:
    """Publish once the current transaction commits (nothing at all if it rolls back);
    ``record_sent`` as in :func:`publish_batches`."""
    ids = list(delivery_ids)
    if ids:
        transaction.on_commit(lambda: publish_batches(ids, record_sent=record_sent), robust=True)


def publish_signups(signup_ids: Iterable[int]) -> int:
    """Publish one ``process_signup`` message per pending sign-up; return how many went.

    The rows were stamped ``enqueued_at`` when written (a sign-up costs no second write when
    the publish works); failures are recorded (``publish_failed_at``), never raised: the sweep
    retries them.
    """
    messages = [(SIGNUP_TASK, [pk], [pk]) for pk in signup_ids]
    return _publish(messages, None, PendingSignup, record_sent=False) if messages else 0


def publish_signup_on_commit(signup_id: int) -> None:
    """Publish a pending sign-up once the current transaction commits."""
    transaction.on_commit(lambda: publish_signups([signup_id]), robust=True)
