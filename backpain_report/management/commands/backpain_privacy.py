import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backpain_report.models import Subscriber
from backpain_report.rights.addresses import canonical_email, email_masked
from backpain_report.selectors import pending_signups_export, subscriber_export
from backpain_report.services.privacy import (
    PurgeNotApplicable,
    address_erase,
    subscribers_purge_unconfirmed,
    subscribers_unconfirmed_stale,
)


class Command(BaseCommand):
    help = (
        "Privacy operations: 'export EMAIL' prints a subscriber's data as JSON; 'erase EMAIL' "
        "anonymises them; 'purge-unconfirmed --days N [--dry-run]' deletes sign-ups asked to "
        "confirm more than N days ago that never did (double opt-in only)."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="operation", required=True)
        sub.add_parser("export", help="Print one subscriber's data as JSON.").add_argument("email")
        sub.add_parser("erase", help="Anonymise one subscriber.").add_argument("email")
        purge = sub.add_parser(
            "purge-unconfirmed",
            help="Delete sign-ups asked to confirm (double opt-in) more than --days ago that "
            "never confirmed.",
        )
        purge.add_argument("--days", type=int, required=True)
        purge.add_argument(
            "--dry-run", action="store_true", help="List what would be deleted; delete nothing."
        )

    def handle(self, *args, operation: str, **options):
        if operation == "purge-unconfirmed":
            self._purge(days=options["days"], dry_run=options["dry_run"])
            return
        canonical = self._canonical(options["email"])
        if operation == "export":
            subscriber = Subscriber.objects.filter(email_canonical=canonical).first()
            waiting = pending_signups_export(email_canonical=canonical)
            if subscriber is None and not waiting:
                raise CommandError(f"No subscriber with the address {options['email']!r}.")
            data = (
                subscriber_export(subscriber=subscriber)
                if subscriber is not None
                else {"email_canonical": canonical, "pending_signups": waiting}
            )
            self.stdout.write(json.dumps(data, indent=2))
            return
        erased, waiting_count = address_erase(email_canonical=canonical)
        if erased is None and not waiting_count:
            raise CommandError(f"No subscriber with the address {options['email']!r}.")
        if erased is not None:
            self.stdout.write(f"Erased subscriber #{erased.pk}.")
        if waiting_count:
            self.stdout.write(f"Deleted {waiting_count} sign-ups waiting for a worker.")

    def _purge(self, *, days: int, dry_run: bool) -> None:
        try:
            stale = subscribers_unconfirmed_stale(older_than_days=days)
            if dry_run:
                rows = stale.order_by("confirmation_requested_at").values_list(
                    "pk", "email", "confirmation_requested_at"
                )
                count = 0
                for pk, email, requested in rows.iterator():
                    count += 1
                    self.stdout.write(
                        f"#{pk} {email_masked(email)} asked to confirm {requested:%Y-%m-%d %H:%M}"
                    )
                self.stdout.write(f"Would delete {count} unconfirmed sign-ups (dry run).")
                return
            count = subscribers_purge_unconfirmed(older_than_days=days)
        except PurgeNotApplicable as exc:
            self.stdout.write(f"Nothing to purge. {exc}")
            return
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Deleted {count} unconfirmed sign-ups.")

    def _canonical(self, email: str) -> str:
        try:
            return canonical_email(email)
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {email!r}") from exc
