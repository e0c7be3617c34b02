"""The broker connection every publish goes through: bounded, pooled, never retrying.

A row in the database is the source of truth; a message only says "look at row N". Publishing
is bounded (short socket and connect timeouts, no retry loop), so a sick broker costs the caller
about ``PUBLISH_TIMEOUT`` seconds at most; a row whose publish failed is marked
``publish_failed_at`` and picked up by the sweep. :mod:`backpain_report.delivery.publishing`
publishes sign-ups and deliveries through it, :mod:`backpain_report.webhooks.outbox` webhook
events (which sit below the delivery engine, so that recording a suppression can queue one).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from celery import current_app
from django.db import models
from django.utils import timezone

from .conf import app_settings

logger = logging.getLogger(__name__)

#: ``(task name, args, row ids)``: one message and the rows it speaks for.
Message = tuple[str, list, list[int]]


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


class ConnectionPool:
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


connection_pool = ConnectionPool()


def bounded_connection() -> AbstractContextManager[Any]:
    """A broker connection that gives up after ``PUBLISH_TIMEOUT`` instead of retrying; an idle
    one is reused when the last publish through it worked."""
    return connection_pool.connection()


def rows_publish(
    messages: list[Message],
    countdown: float | None,
    model: type[models.Model],
    *,
    record_sent: bool = True,
    queue: str | None = None,
) -> int:
    """Send ``(task name, args, row ids)`` messages over one bounded connection (to ``queue``,
    else the task's default queue).

    Records the outcome on the ``model`` rows (``enqueued_at``, or ``publish_failed_at`` for
    the sweep) and returns how many rows were published; broker faults are logged, never raised.
    """
    sent: list[int] = []
    # Only when given: a site's own routing (or a wrapper that names a queue) stays in charge.
    routing: dict[str, Any] = {"queue": queue} if queue else {}
    try:
        with bounded_connection() as connection:
            for task_name, args, row_ids in messages:
                current_app.send_task(
                    task_name,
                    args=args,
                    connection=connection,
                    retry=False,
                    countdown=countdown,
                    **routing,
                )
                sent.extend(row_ids)
    except Exception as exc:  # noqa: BLE001 - any broker fault leaves the rows for the sweep
        logger.warning("Could not publish %s: %s: %s", model.__name__, type(exc).__name__, exc)
    _record_publish(
        model, [pk for _name, _args, ids in messages for pk in ids], sent, record_sent=record_sent
    )
    return len(sent)


#: Rows per UPDATE that records a publish's outcome: under every database's parameter limit
#: (SQLite before 3.32 allows 999 by default, psycopg's server-side binding 65,535), however many
#: rows one publish carries (a follow-up pass publishes every row it made at once).
RECORD_BATCH = 900


def _record_publish(
    model: type[models.Model],
    ids: list[int],
    sent: list[int],
    *,
    record_sent: bool = True,
) -> None:
    now = timezone.now()
    if sent and record_sent:
        _rows_update(model, sent, enqueued_at=now, publish_failed_at=None)
    published = set(sent)
    failed = [pk for pk in ids if pk not in published]
    _rows_update(model, failed, publish_failed_at=now)


def _rows_update(model: type[models.Model], ids: list[int], **values: Any) -> None:
    """Set ``values`` on the ``model`` rows of ``ids``, ``RECORD_BATCH`` rows per UPDATE."""
    for start in range(0, len(ids), RECORD_BATCH):
        model._default_manager.filter(pk__in=ids[start : start + RECORD_BATCH]).update(**values)
