"""Create the bundled article and its free report (editable afterwards in the admin)."""

from django.db import migrations
from django.utils import timezone


def seed_content(apps, schema_editor):
    from backpain_report import seed

    Report = apps.get_model("backpain_report", "Report")
    Article = apps.get_model("backpain_report", "Article")
    source = seed.read_article()
    report, _ = Report.objects.get_or_create(
        slug=seed.REPORT_SLUG,
        defaults={
            "title": seed.REPORT_TITLE,
            "subtitle": seed.REPORT_SUBTITLE,
            "author": source.byline or "The Back Pain Report team",
            "body": seed.read_report_body(),
        },
    )
    Article.objects.get_or_create(
        slug=seed.ARTICLE_SLUG,
        defaults={
            "title": source.title,
            "byline": source.byline,
            "original_publication_date": source.original_publication_date,
            "summary": source.summary,
            "body": source.body,
            "call_to_action": source.call_to_action,
            "report": report,
            "status": "published",
            "published_at": timezone.now(),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("backpain_report", "0001_initial")]

    operations = [migrations.RunPython(seed_content, migrations.RunPython.noop)]
