"""Privacy: erasing a subscriber, purging sign-ups never confirmed, deleting with stored PDFs.

What the app holds about an address, as JSON, is a read: :func:`backpain_report.selectors.
subscriber_export`.
"""

from __future__ import annotations

import datetime
import math

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..conf import app_settings
from ..models import Delivery, MailEvent, PendingSignup, Subscriber
from ..report import pdfstore
from ..webhooks.outbox import erasures_record

ERASED_DOMAIN = "erased.invalid"


def address_erase(*, email_canonical: str) -> tuple[Subscriber | None, int]:
    """Erase everything held about an address: its subscriber (anonymised, see
    :func:`subscriber_erase`) and its sign-ups still waiting for a worker (deleted).

    Returns the subscriber (None if there was none) and how many waiting sign-ups went. The
    waiting rows go first: a worker processing one meanwhile either finds it gone or has
    committed its subscriber, which is then erased.
    """
    with transaction.atomic():
        waiting = PendingSignup.objects.filter(email_canonical=email_canonical).delete()[0]
    subscriber = Subscriber.objects.filter(email_canonical=email_canonical).first()
    if subscriber is not None:
        subscriber_erase(subscriber=subscriber)
    return subscriber, waiting


def subscriber_erase(*, subscriber: Subscriber) -> None:
    """Anonymise a subscriber: personal data goes, counts for the statistics stay.

    Queued deliveries are cancelled; error texts and bounce descriptions (which may quote the
    address) are cleared.
    """
    now = timezone.now()
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk).update(
            email=f"erased-{subscriber.pk}@{ERASED_DOMAIN}",
            email_canonical=f"erased-{subscriber.pk}@{ERASED_DOMAIN}",
            name="",
            source_url="",
            consent_ip="",
            consent_user_agent="",
            unsubscribed_at=subscriber.unsubscribed_at or now,
            followups_consented=False,
            suppressed_reason="",  # may quote the mail server's answer, with the address
        )
        MailEvent.objects.filter(subscriber_id=subscriber.pk).update(description="")
        deliveries = Delivery.objects.filter(subscriber_id=subscriber.pk)
        deliveries.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING]).update(
            status=Delivery.Status.CANCELLED
        )
        deliveries.update(last_error="", message_id="")
        PendingSignup.objects.filter(email_canonical=subscriber.email_canonical).delete()
        if not subscriber.email_canonical.endswith(f"@{ERASED_DOMAIN}"):  # not twice
            erasures_record({subscriber.pk: subscriber.source_article_id})
    pdfstore.subscriber_files_delete(subscriber_id=subscriber.pk)  # their stored PDFs hold the name


class PurgeNotApplicable(Exception):
    """Purging unconfirmed sign-ups makes no sense here; the message says why."""


def subscribers_purge_min_days() -> int:
    """The shortest purge age: a confirmation link must have expired before its reader goes.

    A link's clock starts when its email is built, which retries or a broker outage can put
    after the request: one day more than the link lives, and
    :func:`subscribers_unconfirmed_stale` also keeps readers sent a confirmation within the age.
    """
    return math.ceil(int(app_settings.CONFIRM_MAX_AGE) / 86400) + 1


def subscribers_unconfirmed_stale(*, older_than_days: int) -> QuerySet[Subscriber]:
    """Subscribers asked to confirm more than ``older_than_days`` ago who never did.

    Aged from the latest confirmation request, so a reader who signed up afresh yesterday is
    kept; a reader is purged only for a request that was sent to them (a confirmation made for
    their latest consent, delivered), never for one that waited, failed or was never made.
    Raises :class:`PurgeNotApplicable` when double opt-in is off (nobody is waiting for a
    confirmation: every sign-up is a subscriber), and ``ValueError`` when the age is shorter
    than a confirmation link lives (readers holding a working link would be deleted).
    """
    if not app_settings.DOUBLE_OPT_IN:
        raise PurgeNotApplicable(
            "Double opt-in is off (BACKPAIN_REPORT['DOUBLE_OPT_IN']): every sign-up is a "
            "subscriber and nobody is waiting to confirm, so there is nothing to purge."
        )
    minimum = subscribers_purge_min_days()
    if older_than_days < minimum:
        raise ValueError(
            f"Confirmation links work for {minimum - 1} days (CONFIRM_MAX_AGE), counted from "
            f"when their email is built: purge only requests older than that and a day "
            f"(--days {minimum} or more)."
        )
    cutoff = timezone.now() - datetime.timedelta(days=older_than_days)
    confirmations = Delivery.objects.filter(
        subscriber=OuterRef("pk"), kind=Delivery.Kind.CONFIRMATION
    )
    recent_link = confirmations.filter(
        Q(sent_at__gte=cutoff) | Q(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING])
    )
    # Only a request that went out is ignored: a consent whose confirmation was never sent
    # (one made before its re-subscription, for the consent before, does not count) is not
    # purged for it.
    asked = confirmations.filter(
        status=Delivery.Status.SENT,
        created_at__gte=Coalesce(OuterRef("consent_recorded_at"), OuterRef("consented_at")),
    )
    return Subscriber.objects.filter(
        Exists(asked),
        ~Exists(recent_link),
        confirmed_at__isnull=True,
        confirmation_requested_at__isnull=False,
        confirmation_requested_at__lt=cutoff,
    )


def subscribers_purge_unconfirmed(
    *, older_than_days: int, subscribers: QuerySet[Subscriber] | None = None
) -> int:
    """Delete the sign-ups of :func:`subscribers_unconfirmed_stale` (among ``subscribers`` if
    given) with their deliveries; return how many subscribers went. Raises
    :class:`PurgeNotApplicable`."""
    stale = subscribers_unconfirmed_stale(older_than_days=older_than_days)
    if subscribers is not None:
        stale = stale.filter(pk__in=subscribers.values("pk"))
    return subscribers_delete(stale)


def subscribers_delete(subscribers: QuerySet[Subscriber]) -> int:
    """Delete subscribers with their deliveries and the PDFs stored for them; return how many.

    The rows go in one transaction; their stored PDFs (which hold the reader's name) are deleted
    once it commits.
    """
    with transaction.atomic():
        # Lock the rows (PostgreSQL): a sign-up being processed for one of them waits for us.
        ids = list(subscribers.select_for_update(of=("self",)).values_list("pk", flat=True))
        deliveries = list(
            Delivery.objects.filter(subscriber_id__in=ids).values_list("pk", "subscriber_id")
        )
        # Delete only rows that still match (a fresh sign-up may have changed one meanwhile).
        rows = subscribers.filter(pk__in=ids).values_list("pk", "source_article_id", "email")
        going = {pk: (article_id, email) for pk, article_id, email in rows}
        Subscriber.objects.filter(pk__in=going).delete()
        # An address erased before already had its subscriber.erased.
        erased = f"@{ERASED_DOMAIN}"
        erasures_record(
            {pk: article for pk, (article, email) in going.items() if not email.endswith(erased)}
        )
        files = [pk for pk, subscriber_id in deliveries if subscriber_id in going]
        transaction.on_commit(lambda: pdfstore.delivery_files_delete(files), robust=True)
    return len(going)


def deliveries_delete(deliveries: QuerySet[Delivery]) -> int:
    """Delete deliveries and the PDFs stored for them (after the commit); return how many."""
    with transaction.atomic():
        ids = list(deliveries.values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids).delete()
        transaction.on_commit(lambda: pdfstore.delivery_files_delete(ids), robust=True)
    return len(ids)
