import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backpain_report.addresses import canonical_email
from backpain_report.models import Subscriber
from backpain_report.privacy import subscriber_erase, subscriber_export, unconfirmed_purge


class Command(BaseCommand):
    help = (
        "Privacy operations: 'export EMAIL' prints a subscriber's data as JSON; 'erase EMAIL' "
        "anonymises them; 'purge-unconfirmed --days N' deletes sign-ups never confirmed."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="operation", required=True)
        sub.add_parser("export", help="Print one subscriber's data as JSON.").add_argument("email")
        sub.add_parser("erase", help="Anonymise one subscriber.").add_argument("email")
        purge = sub.add_parser("purge-unconfirmed", help="Delete stale unconfirmed sign-ups.")
        purge.add_argument("--days", type=int, required=True)

    def handle(self, *args, operation: str, **options):
        if operation == "purge-unconfirmed":
            if options["days"] < 1:
                raise CommandError("--days must be at least 1.")
            count = unconfirmed_purge(older_than_days=options["days"])
            self.stdout.write(f"Deleted {count} unconfirmed sign-ups.")
            return
        subscriber = self._subscriber(options["email"])
        if operation == "export":
            self.stdout.write(json.dumps(subscriber_export(subscriber=subscriber), indent=2))
        else:
            subscriber_erase(subscriber=subscriber)
            self.stdout.write(f"Erased subscriber #{subscriber.pk}.")

    def _subscriber(self, email: str) -> Subscriber:
        try:
            canonical = canonical_email(email)
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {email!r}") from exc
        subscriber = Subscriber.objects.filter(email_canonical=canonical).first()
        if subscriber is None:
            raise CommandError(f"No subscriber with the address {email!r}.")
        return subscriber
