"""Tell the workers about a delivery: the only module that talks to the broker.

The Delivery row is the source of truth; a message only says "look at row N". Publishing is
bounded (short socket and connect timeouts, no retry loop), so a sick broker costs a sign-up about
``PUBLISH_TIMEOUT`` seconds at most. A delivery whose publish failed stays pending, is marked
``publish_failed_at`` and is sent by the sweep.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from ..conf import app_settings
from ..models import Delivery, PendingSignup

logger = logging.getLogger(__name__)

DELIVER_TASK = "backpain_report.deliver_report"
DELIVER_BATCH_TASK = "backpain_report.deliver_batch"
SWEEP_TASK = "backpain_report.sweep_deliveries"
SIGNUP_TASK = "backpain_report.process_signup"
# Deliveries per batch message: one SMTP connection each, small enough to spread over workers.
BATCH_SIZE = 20


def _bounded_options(timeout: float) -> dict:
    """Transport options that give up after ``timeout``. ``confirm_publish`` (AMQP; other
    transports ignore it) makes a publish wait for the broker's ack, bounded by the read
    timeout: over a pooled connection to a frozen RabbitMQ a publish otherwise lands in the
    socket buffer and counts as sent."""
    return {
        "confirm_publish": True,
        "max_retries": 0,
        "connect_retries_timeout": timeout,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "read_timeout": timeout,
        "write_timeout": timeout,
    }


class _ConnectionPool:
    """A few idle bounded broker connections per process, reused from one publish to the next.

    Opening a broker connection costs more than the publish itself (for Redis: two sockets and
    a handshake), so a sign-up reuses an idle one. Each keeps its short socket timeouts, so a
    sick broker still costs about ``PUBLISH_TIMEOUT``; a connection that failed is closed, never
    returned. Keyed by process id (a forked child never uses its parent's sockets), Celery app,
    broker URL and timeout.
    """

    LIMIT = 4
    #: An idle connection older than this is closed, not reused: a broker that dropped it
    #: meanwhile (a restart, an idle timeout) may not say so until a write is lost.
    MAX_IDLE = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._idle: list[tuple[Any, float]] = []

    def _current_key(self, timeout: float) -> tuple:
        return (os.getpid(), id(current_app), current_app.conf.broker_url, timeout)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        timeout = float(app_settings.PUBLISH_TIMEOUT)
        key = self._current_key(timeout)
        now = time.monotonic()
        stale: list[Any] = []
        with self._lock:
            if key != self._key:
                self._key, self._idle = key, []  # another process or broker: forget, not close
            connection = None
            while self._idle and connection is None:
                candidate, since = self._idle.pop()
                if now - since <= self.MAX_IDLE:
                    connection = candidate
                else:
                    stale.append(candidate)
        for old in stale:
            _release_quietly(old)
        if connection is None:
            connection = current_app.connection_for_write(
                connect_timeout=timeout, transport_options=_bounded_options(timeout)
            )
        healthy = False
        try:
            yield connection
            healthy = True
        finally:
            with self._lock:
                keep = healthy and key == self._key and len(self._idle) < self.LIMIT
                if keep:
                    self._idle.append((connection, time.monotonic()))
            if not keep:
                _release_quietly(connection)

    def clear(self) -> None:
        """Close every idle connection (tests; a site may call it when it reconfigures)."""
        with self._lock:
            idle, self._idle, self._key = self._idle, [], None
        for connection, _since in idle:
            _release_quietly(connection)


def _release_quietly(connection: Any) -> None:
    try:
        connection.release()
    except Exception:
        logger.debug("Ignoring an error while closing the broker connection", exc_info=True)


_pool = _ConnectionPool()


def bounded_connection() -> AbstractContextManager[Any]:
    """A broker connection that gives up after ``PUBLISH_TIMEOUT`` instead of retrying; an idle
    one is reused when the last publish through it worked."""
    return _pool.connection()


def _publish(
    messages: list[tuple[str, list, list[int]]],
    countdown: float | None,
    model: type[Delivery] | type[PendingSignup] = Delivery,
    *,
    record_sent: bool = True,
) -> int:
    """Send ``(task name, args, row ids)`` messages over one bounded connection.

    Records the outcome on the ``model`` rows (``enqueued_at``, or ``publish_failed_at`` for
    the sweep) and returns how many rows were published; broker faults are logged, never raised.
    """
    sent: list[int] = []
    try:
        with bounded_connection() as connection:
            for task_name, args, delivery_ids in messages:
                current_app.send_task(
                    task_name, args=args, connection=connection, retry=False, countdown=countdown
                )
                sent.extend(delivery_ids)
    except Exception as exc:  # noqa: BLE001 - any broker fault leaves the rows for the sweep
        logger.warning("Could not publish %s: %s: %s", model.__name__, type(exc).__name__, exc)
    _record_publish(
        model, [pk for _name, _args, ids in messages for pk in ids], sent, record_sent=record_sent
    )
    return len(sent)


def publish_deliveries(delivery_ids: Iterable[int], *, countdown: float | None = None) -> int:
    """Publish one message per delivery over one bounded connection; return how many went.

    Failures are recorded on the rows (``publish_failed_at``), never raised: the sweep retries.
    """
    return _publish([(DELIVER_TASK, [pk], [pk]) for pk in delivery_ids], countdown)


def publish_batches(delivery_ids: Iterable[int]) -> int:
    """Publish deliveries in batch messages of ``BATCH_SIZE`` (one SMTP connection each).

    A single delivery goes as an ordinary ``deliver_report`` message. Returns how many were
    published; failures are recorded as in :func:`publish_deliveries`.
    """
    ids = list(delivery_ids)
    if len(ids) == 1:
        return publish_deliveries(ids)
    batches = [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]
    return _publish([(DELIVER_BATCH_TASK, [batch], batch) for batch in batches], None)


def _record_publish(
    model: type[Delivery] | type[PendingSignup],
    ids: list[int],
    sent: list[int],
    *,
    record_sent: bool = True,
) -> None:
    now = timezone.now()
    if sent and record_sent:
        model.objects.filter(pk__in=sent).update(enqueued_at=now, publish_failed_at=None)
    published = set(sent)
    failed = [pk for pk in ids if pk not in published]
    if failed:
        model.objects.filter(pk__in=failed).update(publish_failed_at=now)


def publish_delivery(delivery_id: int, *, countdown: float | None = None) -> bool:
    """Publish the message for one delivery; False when the broker could not take it."""
    return publish_deliveries([delivery_id], countdown=countdown) == 1


def publish_on_commit(*delivery_ids: int) -> None:
    """Publish once the current transaction commits (nothing at all if it rolls back)."""
    ids = list(delivery_ids)
    if ids:
        transaction.on_commit(lambda: publish_batches(ids), robust=True)


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
