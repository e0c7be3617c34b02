"""Celery tasks: thin wrappers that load by id and call the services.

The site's own Celery app discovers these (``app.autodiscover_tasks()``); names are stable.
"""

from __future__ import annotations

from celery import shared_task

from .delivery.publishing import (
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    SIGNUP_TASK,
    SWEEP_TASK,
    publish_delivery,
)
from .delivery.retry import TASK_OPTIONS
from .delivery.sending import Outcome, deliveries_send, delivery_send
from .delivery.sweep import deliveries_sweep, signups_sweep, sweep_log, webhook_events_sweep
from .delivery.webhooks import webhook_send, webhooks_send
from .models import Delivery
from .page.pageviews import page_views_flush
from .services.followups import SCHEDULE_TASK, followups_schedule
from .services.subscribers import signup_process
from .webhooks.outbox import WEBHOOK_BATCH_TASK, WEBHOOK_TASK, events_publish


@shared_task(name=DELIVER_TASK, **TASK_OPTIONS)
def deliver_report(delivery_id: int) -> str:
    """Send one delivery; a temporary failure schedules the next attempt with the backoff
    :mod:`backpain_report.delivery.retry` decided."""
    result = delivery_send(delivery_id=delivery_id)
    if result.outcome is Outcome.RETRY:
        # The row holds the schedule; if this publish fails the sweep picks the row up.
        publish_delivery(delivery_id, countdown=result.retry_in)
    return result.outcome.value


@shared_task(name=SIGNUP_TASK, **TASK_OPTIONS)
def process_signup(signup_id: int) -> str:
    """Decide what a sign-up means (new, known, re-subscribed...) and send what it needs."""
    result = signup_process(signup_id=signup_id)
    if (
        result is None
        or result.delivery is None
        or result.delivery.status != Delivery.Status.PENDING
    ):
        return "nothing"
    if result.delivery.next_attempt_at is not None:  # waits for the address's window to end
        return "deferred"
    return deliver_report(result.delivery.pk)


@shared_task(name=DELIVER_BATCH_TASK, **TASK_OPTIONS)
def deliver_batch(delivery_ids: list[int]) -> dict[str, int]:
    """Send several deliveries over one SMTP connection (used by the sweep and resends)."""
    counts = {outcome.value: 0 for outcome in Outcome}
    for result in deliveries_send(delivery_ids=list(delivery_ids)):
        counts[result.outcome.value] += 1
        if result.outcome is Outcome.RETRY:
            publish_delivery(result.delivery_id, countdown=result.retry_in)
    return counts


@shared_task(name=WEBHOOK_TASK, **TASK_OPTIONS)
def deliver_webhook(event_id: int) -> str:
    """POST one webhook event; a temporary failure schedules the next attempt (published to
    ``WEBHOOK_QUEUE`` with a countdown; the sweep covers a lost one)."""
    result = webhook_send(event_id=event_id)
    if result.outcome is Outcome.RETRY:
        events_publish([event_id], countdown=result.retry_in)
    return result.outcome.value


@shared_task(name=WEBHOOK_BATCH_TASK, **TASK_OPTIONS)
def deliver_webhook_batch(event_ids: list[int]) -> dict[str, int]:
    """POST a batch of one endpoint's webhook events (the sweep's and staff's retries send a
    backlog this way); each temporary failure is published again with its countdown."""
    counts = {outcome.value: 0 for outcome in Outcome}
    for result in webhooks_send(event_ids=list(event_ids)):
        counts[result.outcome.value] += 1
        if result.outcome is Outcome.RETRY:
            events_publish([result.event_id], countdown=result.retry_in)
    return counts


@shared_task(name=SCHEDULE_TASK, ignore_result=True)
def schedule_followups() -> int:
    """Create (and publish) the follow-up deliveries that are due; the sweep runs it too."""
    return followups_schedule()


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep_deliveries() -> dict[str, int]:
    """Re-publish sign-ups, deliveries and webhook events whose message was lost, schedule the
    follow-ups that are due, and move page views counted in the cache into the database; run it
    periodically (celery beat). Logs a line only when it found lost messages."""
    page_views_flush()
    signups = signups_sweep()
    deliveries = deliveries_sweep()
    webhooks = webhook_events_sweep()
    sweep_log(signups, deliveries, webhooks)
    followups_schedule()  # last: whatever it meets, the lost messages are re-published first
    return {
        "found": signups.found + deliveries.found + webhooks.found,
        "published": signups.published + deliveries.published + webhooks.published,
    }
