"""The rules of whether a claimed delivery may still go, for every kind and reader state: the
claim's renewal (:func:`_claim_renew`) and the cancelled row's reason (:func:`_stop_error`)
against the rule written out plainly here (suppressed, then unsubscribed, then the kind's
confirmation rule, then a follow-up's consent, then its step), double opt-in on and off."""

from __future__ import annotations

import datetime
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from backpain_report.delivery import sending
from backpain_report.models import Delivery, FollowUpStep
from backpain_report.rights.consent import ALREADY_CONFIRMED_ERROR, UNCONFIRMED_ERROR
from backpain_report.rights.suppression import suppressed_error

KINDS = [Delivery.Kind.REPORT, Delivery.Kind.CONFIRMATION, Delivery.Kind.FOLLOWUP]
#: The address's confirmation: (asked for, confirmed).
CONFIRMATIONS = {
    "never asked": (False, False),
    "asked, unconfirmed": (True, False),
    "asked, confirmed": (True, True),
    "confirmed unasked": (False, True),
}
#: The delivery's follow-up step: (has a step, step active, sequence on).
STEPS = {
    "step on": (True, True, True),
    "step inactive": (True, False, True),
    "sequence off": (True, True, False),
    "both off": (True, False, False),
    "no step": (False, True, True),
}


def expected_error(
    kind: str,
    *,
    doi: bool,
    suppressed: bool,
    unsubscribed: bool,
    confirmation: str,
    consented: bool,
    step: str,
) -> str | None:
    """The first reason that holds, or None: the delivery may go."""
    asked, confirmed = CONFIRMATIONS[confirmation]
    has_step, active, sequence_on = STEPS[step]
    if suppressed:
        return suppressed_error("hard bounce")
    if unsubscribed:
        return sending.UNSUBSCRIBED_ERROR
    if kind == Delivery.Kind.CONFIRMATION:
        return ALREADY_CONFIRMED_ERROR if confirmed else None
    if doi and asked and not confirmed:
        return UNCONFIRMED_ERROR
    if kind == Delivery.Kind.FOLLOWUP:
        if not consented:
            return sending.FOLLOWUPS_NOT_AGREED_ERROR
        if not (has_step and active and sequence_on):
            return sending.FOLLOWUP_OFF_ERROR
    return None


@pytest.mark.parametrize("doi", [True, False], ids=["doi", "no-doi"])
@pytest.mark.parametrize("kind", KINDS)
def test_renewal_and_reason_follow_the_rules_in_order(
    kind, doi, settings, make_subscriber, make_delivery, sequence
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": doi}
    now = timezone.now()
    report = sequence.report
    failures = []
    for suppressed, unsubscribed, confirmation, consented, step in itertools.product(
        [False, True], [False, True], CONFIRMATIONS, [False, True], STEPS
    ):
        case = dict(
            suppressed=suppressed,
            unsubscribed=unsubscribed,
            confirmation=confirmation,
            consented=consented,
            step=step,
        )
        asked, confirmed = CONFIRMATIONS[confirmation]
        has_step, active, sequence_on = STEPS[step]
        FollowUpStep.objects.filter(pk=sequence.pk).update(is_active=active)
        type(report).objects.filter(pk=report.pk).update(followups_enabled=sequence_on)
        subscriber = make_subscriber(
            suppressed_at=now if suppressed else None,
            suppressed_reason="hard bounce" if suppressed else "",
            unsubscribed_at=now if unsubscribed else None,
            confirmation_requested_at=now if asked else None,
            confirmed_at=now if confirmed else None,
            followups_consented=consented,
        )
        claimed_at = now - datetime.timedelta(seconds=30)
        row = make_delivery(
            subscriber,
            kind=kind,
            step=sequence if has_step else None,
            status=Delivery.Status.SENDING,
            claimed_at=claimed_at,
        )
        delivery = Delivery.objects.select_related("subscriber", "step").get(pk=row.pk)
        want = expected_error(kind, doi=doi, **case)
        got_error = sending._stop_error(delivery)
        renewed = sending._claim_renew(delivery)
        stored = Delivery.objects.values_list("claimed_at", flat=True).get(pk=row.pk)
        if want is not None and got_error != want:
            failures.append((case, "reason", got_error, want))
        if renewed != (want is None) or (stored != claimed_at) != renewed:
            failures.append((case, "renewed", renewed, want is None))
        stops = sending._may_not_send(delivery)
        if stops != (want is not None):
            failures.append((case, "may_not_send", stops, want is not None))
    assert not failures, failures


def test_renewal_needs_the_claim_to_stand(make_delivery):
    """A reader who may be written to does not renew a claim another run took."""
    taken = timezone.now() - datetime.timedelta(seconds=30)
    row = make_delivery(status=Delivery.Status.SENDING, claimed_at=taken)
    ours = Delivery.objects.get(pk=row.pk)
    ours.claimed_at = taken - datetime.timedelta(seconds=1)
    assert sending._claim_renew(ours) is False
    cancelled = make_delivery(status=Delivery.Status.CANCELLED, claimed_at=taken)
    assert sending._claim_renew(Delivery.objects.get(pk=cancelled.pk)) is False


@pytest.mark.parametrize("kind", KINDS)
def test_the_renewal_stays_a_single_table_update(kind, make_delivery, sequence):
    """No ``id IN (SELECT ...)`` rewrite: PostgreSQL re-checks the row's own status and claim
    on a row another transaction changed only in a plain conditional UPDATE."""
    from django.test.utils import CaptureQueriesContext

    row = make_delivery(
        kind=kind, step=sequence, status=Delivery.Status.SENDING, claimed_at=timezone.now()
    )
    with CaptureQueriesContext(connection) as queries:
        sending._claim_renew(Delivery.objects.get(pk=row.pk))
    [update] = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert "IN (SELECT" not in update.upper(), update
    assert " JOIN " not in update.upper().split(" WHERE ")[0], update


def test_a_suppressions_reason_is_read_with_the_rule_in_one_query(make_delivery, make_subscriber):
    """The suppression's kind comes from the same snapshot as the rule that matched: a reader
    deleted, or a suppression lifted, between two reads cannot crash the worker or name a
    reason the row no longer has."""
    reader = make_subscriber(suppressed_at=timezone.now(), suppressed_reason="bounce")
    row = make_delivery(subscriber=reader, status=Delivery.Status.SENDING)
    with CaptureQueriesContext(connection) as captured:
        error = sending._stop_error(row)
    assert error == suppressed_error("bounce") and len(captured) == 1
    Delivery.objects.filter(pk=row.pk).delete()  # gone meanwhile (its reader deleted)
    assert sending._stop_error(row) == sending.UNSUBSCRIBED_ERROR
