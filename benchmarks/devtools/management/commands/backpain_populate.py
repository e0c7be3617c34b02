from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from benchmarks.devtools.populate import BATCH_SIZE, populate


class Command(BaseCommand):
    help = (
        "Fill the database with N realistic subscribers, one delivery each, and daily page "
        "views (for scale tests; COPY on PostgreSQL). Prints how long each phase took. Runs "
        "only with DEBUG on or --i-know-this-is-not-production."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subscribers", type=int, required=True, metavar="N")
        parser.add_argument("--days", type=int, default=365, help="Spread sign-ups over D days.")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
        parser.add_argument("--seed", type=int, default=None, help="Random seed (repeatable).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--i-know-this-is-not-production",
            action="store_true",
            dest="not_production",
            help="Run although DEBUG is off (a scale-test database).",
        )

    def handle(self, *args, subscribers: int, days: int, batch_size: int, **options):
        if not (settings.DEBUG or options["not_production"]):
            raise CommandError(
                "backpain_populate fills the database with made-up subscribers and deliveries; "
                "DEBUG is off, so this may be a production database. Run it only on a "
                "development or scale-test database, and say so with "
                "--i-know-this-is-not-production."
            )
        if subscribers < 1 or days < 1 or batch_size < 1:
            raise CommandError("--subscribers, --days and --batch-size must be positive.")
        verbose = options["verbosity"] > 1
        try:
            result = populate(
                subscribers=subscribers,
                days=days,
                batch_size=batch_size,
                seed=options["seed"],
                using=options["database"],
                progress=(lambda line: self.stdout.write(line)) if verbose else None,
            )
        except DatabaseError as exc:
            raise CommandError(f"Populating failed: {exc}") from exc
        t = result.timings
        rate = result.subscribers / t["total"] if t["total"] else 0
        self.stdout.write(
            f"subscribers: {result.subscribers:,} written in {t['subscribers']:.1f} s\n"
            f"deliveries:  {result.deliveries:,} written in {t['deliveries']:.1f} s\n"
            f"page views:  {result.page_views:,} article-days in {t['page_views']:.1f} s\n"
            f"analyze:     {t['analyze']:.1f} s"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Populated {result.subscribers:,} subscribers in {t['total']:.1f} s "
                f"({rate:,.0f} per second)."
            )
        )
