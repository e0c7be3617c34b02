from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backpain_report.models import Delivery, Subscriber
from backpain_report.rights.addresses import canonical_email
from backpain_report.services.deliveries import (
    deliveries_resend,
    deliveries_retry_failed,
    deliveries_retry_skipped,
)


class Command(BaseCommand):
    help = (
        "Resend the report: to the given addresses (a new delivery each), or retry every "
        "delivery with --status failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("emails", nargs="*", help="Subscriber email addresses.")
        parser.add_argument(
            "--status",
            choices=[Delivery.Status.FAILED],
            help="Retry every delivery in this status.",
        )

    def handle(self, *args, emails: list[str], status: str | None = None, **options):
        if not emails and not status:
            raise CommandError("Give one or more email addresses, or --status failed.")
        if status:
            failed = Delivery.objects.filter(status=status)
            skipped = deliveries_retry_skipped(failed)
            count = deliveries_retry_failed(failed)
            self.stdout.write(f"Queued {count} failed deliveries again.")
            if skipped.unsubscribed or skipped.suppressed:
                self.stdout.write(
                    f"Skipped {skipped.unsubscribed} of unsubscribed readers and "
                    f"{skipped.suppressed} of suppressed addresses (lift the suppression first)."
                )
            if skipped.unconfirmed:
                self.stdout.write(
                    f"Skipped {skipped.unconfirmed} reports of readers who have not confirmed "
                    "their address (double opt-in): they get only the confirmation request."
                )
        if emails:
            try:
                wanted = {canonical_email(e) for e in emails}
            except ValidationError as exc:
                raise CommandError(f"Not an email address: {exc.messages[0]}") from exc
            subscribers = list(Subscriber.objects.filter(email_canonical__in=wanted))
            unknown = sorted(wanted - {s.email_canonical for s in subscribers})
            result = deliveries_resend(subscribers)
            self.stdout.write(
                f"Queued {result.queued} new deliveries; skipped {result.skipped} unsubscribed"
                f" and {result.suppressed} suppressed."
            )
            if result.unconfirmed:
                self.stdout.write(
                    f"Skipped {result.unconfirmed} who have not confirmed their address (double"
                    " opt-in): they get only the confirmation request until they confirm."
                )
            if unknown:
                raise CommandError(f"No subscriber with these addresses: {', '.join(unknown)}")
