from django.core.management.base import BaseCommand, CommandError

from backpain_report.sweep import deliveries_sweep


class Command(BaseCommand):
    help = "Run the sweep once: re-publish pending deliveries whose message was lost."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="At most this many rows.")

    def handle(self, *args, limit: int = 1000, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        result = deliveries_sweep(limit=limit)
        self.stdout.write(
            f"Sweep: {result.found} stranded deliveries found, {result.published} re-enqueued."
        )
        if result.given_up:
            self.stdout.write(
                f"{result.given_up} deliveries failed: their worker was lost on the last attempt."
            )
        if result.failed:
            raise CommandError(
                f"{result.failed} deliveries could not be published: is the broker reachable?"
            )
