# Written by hand: the bundled report's follow-up steps, as migrate makes the article and the
# report (0001). The sequence stays off (Report.followups_enabled), so no site starts mailing
# readers without deciding to.

import re
from pathlib import Path

from django.db import migrations

REPORT_SLUG = "back-pain-relief-guide"
LANGUAGES = ("en", "de")
FOLLOWUPS_DIR = Path(__file__).resolve().parent.parent / "seed" / "followups"
# The file format of seed/followups/<language>.md, frozen here as this migration reads it (the
# live parser, backpain_report.seed.read_followups, may change).
STEP_RE = re.compile(r"^## Day (\d+): (.+)$", re.MULTILINE)


def bundled_steps(language):
    """``(position, delay_days, subject, body)`` of each step in the language's file."""
    path = FOLLOWUPS_DIR / f"{language}.md"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    heads = list(STEP_RE.finditer(text))
    steps = []
    for position, head in enumerate(heads, start=1):
        end = heads[position].start() if position < len(heads) else len(text)
        body = text[head.end() : end].strip() + "\n"
        steps.append((position, int(head.group(1)), head.group(2).strip(), body))
    return steps


def seed_followups(apps, schema_editor):
    """Give the bundled report its steps, unless its owner has already made the sequence theirs
    (turned it on, or kept any step: a step deleted from it is not brought back). A sequence
    that is off and has no steps looks the same whether it never had any or its owner deleted
    every one: it gets the six, still off."""
    Report = apps.get_model("backpain_report", "Report")
    FollowUpStep = apps.get_model("backpain_report", "FollowUpStep")
    db = schema_editor.connection.alias  # the database being migrated
    report = Report.objects.using(db).filter(slug=REPORT_SLUG).first()
    if report is None or report.followups_enabled:
        return
    if FollowUpStep.objects.using(db).filter(report=report).exists():
        return
    FollowUpStep.objects.using(db).bulk_create(
        FollowUpStep(
            report=report,
            language=language,
            position=position,
            delay_days=delay_days,
            subject=subject,
            body=body,
        )
        for language in LANGUAGES
        for position, delay_days, subject, body in bundled_steps(language)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("backpain_report", "0009_followups"),
    ]

    operations = [
        migrations.RunPython(seed_followups, migrations.RunPython.noop),
    ]
