"""Create the bundled article and its free report (editable afterwards in the admin)."""

from django.db import migrations
from django.utils import timezone


def seed_content(apps, schema_editor):
    from backpain_report import seed

    Report = apps.get_model("backpain_report", "Report")
    Article = apps.get_model("backpain_report", "Article")
    report, _ = Report.objects.get_or_create(slug=seed.REPORT_SLUG, defaults=seed.report_fields())
    Article.objects.get_or_create(
        slug=seed.ARTICLE_SLUG,
        defaults={
            **seed.article_fields(),
            "report": report,
            "status": "published",
            "published_at": timezone.now(),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("backpain_report", "0001_initial")]

    operations = [migrations.RunPython(seed_content, migrations.RunPython.noop)]
