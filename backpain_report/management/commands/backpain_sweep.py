from django.core.management.base import BaseCommand, CommandError

from backpain_report.stats import page_views_flush
from backpain_report.sweep import deliveries_sweep, signups_sweep


class Command(BaseCommand):
    help = "Run the sweep once: re-publish sign-ups and deliveries whose message was lost."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="At most this many of each.")

    def handle(self, *args, limit: int = 1000, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        page_views_flush()
        failed = 0
        for kind, sweep in (("sign-ups", signups_sweep), ("deliveries", deliveries_sweep)):
            result = sweep(limit=limit)
            failed += result.failed
            self.stdout.write(
                f"Sweep: {result.found} stranded {kind} found, {result.published} re-enqueued."
            )
            if result.given_up:
                self.stdout.write(
                    f"{result.given_up} deliveries failed: their worker was lost on the last "
                    "attempt."
                )
        if failed:
            raise CommandError(f"{failed} could not be published: is the broker reachable?")
