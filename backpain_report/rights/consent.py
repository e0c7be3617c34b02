"""Whose consent still waits for its confirmation: the rule every sending path asks.

Under double opt-in, a consent given (a first sign-up, or a re-subscription) is recorded with
``confirmation_requested_at``; until it is confirmed, its address gets nothing but the
confirmation request, whoever asks for the report (a sign-up, a staff resend, retrying a failed
delivery, the sweep, a download link). A reader who signed up before double opt-in was turned on
gave a consent that needed no confirmation, and is not held back (nor asked, nor renamed, by a
later sign-up of the address).
"""

from __future__ import annotations

from django.db.models import Q

from ..conf import app_settings
from ..models import Subscriber

#: ``last_error`` of a report that was not sent because its address awaits confirmation.
UNCONFIRMED_ERROR = "Not sent: the address has not confirmed (double opt-in)."
#: ``last_error`` of a confirmation request not sent because the address confirmed meanwhile.
ALREADY_CONFIRMED_ERROR = "Not sent: the address is confirmed already."


def awaits_confirmation(subscriber: Subscriber) -> bool:
    """Whether, under double opt-in, this reader was asked to confirm and has not."""
    return bool(
        app_settings.DOUBLE_OPT_IN
        and subscriber.confirmed_at is None
        and subscriber.confirmation_requested_at is not None
    )


def awaiting_confirmation_q(prefix: str = "") -> Q:
    """The :func:`awaits_confirmation` rule as a filter on ``Subscriber`` (``prefix``: the
    lookup path to it, e.g. ``"subscriber__"``); matches nothing with double opt-in off."""
    if not app_settings.DOUBLE_OPT_IN:
        return Q(pk__in=[])
    return Q(
        **{
            f"{prefix}confirmed_at__isnull": True,
            f"{prefix}confirmation_requested_at__isnull": False,
        }
    )
