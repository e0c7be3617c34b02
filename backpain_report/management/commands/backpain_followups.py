"""``manage.py backpain_followups [--as-of ISO8601]``: schedule the follow-up emails due now, or
(development only) as of a later moment, to watch a sequence go out without waiting days."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backpain_report.services.followups import followups_schedule


def as_of_parse(value: str) -> datetime.datetime:
    """An ISO 8601 date or date and time; without an offset, in the site's ``TIME_ZONE``."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"--as-of {value!r} is not an ISO 8601 date or date and time, "
            'e.g. "2030-05-17T09:30" or "2030-05-17T09:30+02:00".'
        ) from exc
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


class Command(BaseCommand):
    help = (
        "Schedule the follow-up emails that are due (as the periodic sweep does) and queue "
        "them for the workers. With --as-of (only with DEBUG on), as if it were that moment: "
        "the development clock for trying a sequence out."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of",
            metavar="ISO8601",
            help="Schedule as if it were this moment (e.g. 2030-05-17T09:30; without an offset "
            "in TIME_ZONE). Refused unless DEBUG is on: it sends real emails early.",
        )

    def handle(self, *args, as_of: str | None = None, **options):
        now = None
        if as_of is not None:
            if not settings.DEBUG:
                raise CommandError(
                    "--as-of is for development only and is refused with DEBUG off: it would "
                    "send readers their follow-ups early. Run it without --as-of."
                )
            now = as_of_parse(as_of)
        count = followups_schedule(now)
        when = f" as of {now.isoformat()}" if now is not None else ""
        self.stdout.write(f"Follow-ups: {count} scheduled{when}.")
