from django.core.management.base import BaseCommand

from backpain_report.services.content import content_seed


class Command(BaseCommand):
    help = (
        "Create the bundled article, free report and its follow-up emails (sequence off), "
        "or restore their text with --restore."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--restore",
            action="store_true",
            help="Overwrite edited text with the bundled version (bumps the report's edition).",
        )

    def handle(self, *args, restore: bool = False, **options):
        article, report = content_seed(overwrite=restore)
        verb = "Restored" if restore else "Ready"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb}: article {article.slug!r} ({article.status}), "
                f"report {report.slug!r} edition {report.edition}."
            )
        )
