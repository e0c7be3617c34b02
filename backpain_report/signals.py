"""Extension points for sites. The app sends these; it never relies on them itself.

All are sent after the database change they describe has been committed, through
:func:`send_after_commit` / :func:`send_robustly`: a receiver that raises is logged and never
breaks a sign-up, a batch or anything else the app does.

- ``subscriber_created(sender=Subscriber, subscriber=...)``: a new sign-up (or a re-subscription).
- ``subscriber_confirmed(sender=Subscriber, subscriber=...)``: the reader confirmed the address.
- ``report_delivered(sender=Delivery, delivery=...)``: the report email was accepted for delivery.
- ``subscriber_unsubscribed(sender=Subscriber, subscriber=...)``: the reader withdrew consent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

subscriber_created = Signal()
subscriber_confirmed = Signal()
report_delivered = Signal()
subscriber_unsubscribed = Signal()


def send_robustly(signal: Signal, *, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; a receiver's exception is logged, never raised."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "A %s receiver (%r) raised %s",
                sender.__name__,
                receiver,
                type(result).__name__,
                exc_info=result,
            )


def send_after_commit(signal: Signal, *, sender: type, **kwargs: Any) -> None:
    """Send ``signal`` robustly once the current transaction commits (never if it rolls back)."""
    send: Callable[[], None] = lambda: send_robustly(signal, sender=sender, **kwargs)  # noqa: E731
    transaction.on_commit(send, robust=True)
