"""When the worker recorded each consent, and when the latest sign-up was given (issue 22)."""

from django.db import migrations, models
from django.db.models.functions import Coalesce


def fill(apps, schema_editor):
    """Existing rows: the consent's own time stands in for both (one UPDATE, at any size), in
    the database being migrated."""
    Subscriber = apps.get_model("backpain_report", "Subscriber")
    Subscriber.objects.using(schema_editor.connection.alias).update(
        consent_recorded_at=Coalesce("consented_at", "created_at"),
        latest_signup_at=Coalesce("consented_at", "created_at"),
    )


class Migration(migrations.Migration):
    dependencies = [("backpain_report", "0006_source_labels")]

    operations = [
        migrations.AddField(
            model_name="subscriber",
            name="consent_recorded_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="consent recorded"),
        ),
        migrations.AddField(
            model_name="subscriber",
            name="latest_signup_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="latest sign-up"),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
