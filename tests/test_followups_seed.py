"""The bundled follow-up sequence (issue 25): its two files, their tone, and the seed."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from backpain_report import seed
from backpain_report.models import FollowUpStep, Report
from backpain_report.report.markup import render_markdown

from .docs_text import docs_section

#: Each red flag of the report's "When to see a doctor" page, by a key term per language.
RED_FLAGS = {
    "en": ["numbness", "tingling", "weakness", "bladder", "bowel", "urine", "fever", "fall",
           "car accident", "wakes you at night", "weight loss", "cancer", "emergency"],
    "de": ["Taubheit", "Kribbeln", "Schwäche", "Blase", "Darm", "Wasserlassen", "Fieber",
           "Sturz", "Autounfall", "nachts wecken", "Gewichtsverlust", "Krebs", "Notruf"],
}  # fmt: skip
#: Words that would promise a cure or a result.
PROMISES = {
    "en": ["cure", "heal", "eliminate", "guarantee", "get rid of", "pain-free", "permanent"],
    "de": ["heilt", "heilen", "heilung", "garantie", "garantiert", "beseitig", "schmerzfrei",
           "dauerhaft"],
}  # fmt: skip
#: The report's sources (report.html's "Sources"), by their addresses.
SOURCES = [
    "https://www.nhs.uk/conditions/back-pain/",
    "https://www.nhs.uk/conditions/sciatica/",
    "https://www.nhs.uk/conditions/cauda-equina-syndrome/",
    "https://www.nice.org.uk/guidance/ng59",
]
NOT_A_DIAGNOSIS = {"en": "not a diagnosis", "de": "keine Diagnose"}


def steps_of(language):
    return seed.read_followups(language)


@pytest.mark.parametrize("language", seed.FOLLOWUP_LANGUAGES)
def test_each_file_holds_three_steps_on_days_2_7_21(language):
    steps = steps_of(language)
    assert [(s.position, s.delay_days) for s in steps] == [(1, 2), (2, 7), (3, 21)]
    for step in steps:
        assert 0 < len(step.subject) <= 60, step.subject
        assert "\n" not in step.subject
        assert "## Day" not in step.body and "<!--" not in step.body
        assert 150 <= len(step.body.split()) <= 300, (step.subject, len(step.body.split()))


def test_the_languages_match_step_for_step():
    english, german = steps_of("en"), steps_of("de")
    assert [s.delay_days for s in english] == [s.delay_days for s in german]
    for en_step, de_step in zip(english, german, strict=True):
        assert en_step.subject != de_step.subject and en_step.body != de_step.body
        assert re.findall(r"\]\((.*?)\)", en_step.body) == re.findall(r"\]\((.*?)\)", de_step.body)


@pytest.mark.parametrize("language", seed.FOLLOWUP_LANGUAGES)
def test_day_7_names_every_red_flag_and_says_when_to_see_a_doctor(language):
    day7 = next(s for s in steps_of(language) if s.delay_days == 7)
    missing = [term for term in RED_FLAGS[language] if term not in day7.body]
    assert not missing
    appointment = {"en": "See your doctor if", "de": "Gehen Sie zu Ihrer Ärztin"}[language]
    assert appointment in day7.body


@pytest.mark.parametrize("language", seed.FOLLOWUP_LANGUAGES)
def test_every_email_is_careful_names_the_sources_and_a_doctor(language):
    for step in steps_of(language):
        text = f"{step.subject}\n{step.body}".lower()
        promised = [w for w in PROMISES[language] if re.search(rf"\b{re.escape(w)}", text)]
        assert not promised, (step.subject, promised)
        assert all(url in step.body for url in SOURCES), step.subject
        assert NOT_A_DIAGNOSIS[language] in step.body
        assert ("doctor" if language == "en" else "ärztliche") in step.body


@pytest.mark.parametrize("language", seed.FOLLOWUP_LANGUAGES)
def test_every_email_renders_through_the_report_markup(language):
    for step in steps_of(language):
        html = render_markdown(step.body)
        assert "<h3" in html and "<li" in html and 'href="https://www.nhs.uk/' in html
        assert "<h2" not in html and "##" not in html and "**" not in html


def test_the_parser_rejects_a_file_without_steps(tmp_path):
    path = tmp_path / "xx.md"
    path.write_text("Just a paragraph.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Day"):
        seed.read_followups("xx", path=path)


def bundled_steps(report):
    return FollowUpStep.objects.filter(report=report)


def _migration_seed():
    """The follow-up seeding of migration 0010, run on today's models."""
    from types import SimpleNamespace

    from django.apps import apps

    module = importlib.import_module("backpain_report.migrations.0010_followups_seed")
    module.seed_followups(apps, SimpleNamespace(connection=connection))


@pytest.mark.django_db
def test_migrate_makes_the_report_and_its_steps_with_the_sequence_off():
    """README's install: ``migrate`` creates the article, the report and its follow-ups, which
    stay off until the owner turns them on; the steps are the bundled text."""
    report = Report.objects.get(slug=seed.REPORT_SLUG)
    FollowUpStep.objects.all().delete()  # as the migration found them: none
    _migration_seed()
    expected = {(s.language, s.position): s for s in seed.followup_fields()}
    steps = list(bundled_steps(report))
    assert len(steps) == len(expected) == 6
    for step in steps:
        bundled = expected[step.language, step.position]
        assert (step.delay_days, step.subject, step.body) == (
            bundled.delay_days,
            bundled.subject,
            bundled.body,
        )
        assert step.is_active and step.edition == 1
    report.refresh_from_db()
    assert report.followups_enabled is False


@pytest.mark.django_db
@pytest.mark.parametrize("owner_made", ["turned on", "own step", "deleted one"])
def test_the_migration_leaves_a_sequence_its_owner_made_theirs(owner_made):
    """An upgrade never adds steps to a sequence that is on or has steps (a site would start
    mailing what its owner removed)."""
    report = Report.objects.get(slug=seed.REPORT_SLUG)
    FollowUpStep.objects.all().delete()
    if owner_made == "turned on":
        Report.objects.filter(pk=report.pk).update(followups_enabled=True)
    elif owner_made == "own step":
        FollowUpStep.objects.create(report=report, delay_days=3, subject="Mine", body="Text.")
    else:
        _migration_seed()
        FollowUpStep.objects.filter(report=report, position=2).delete()
    before = sorted(bundled_steps(report).values_list("pk", flat=True))
    _migration_seed()
    assert sorted(bundled_steps(report).values_list("pk", flat=True)) == before


def _migrate(target: str) -> None:
    """Migrate the app's real migrations (historical models) to ``target``."""
    executor = MigrationExecutor(connection)
    executor.migrate([("backpain_report", target)])


@pytest.fixture
def at_0009(transactional_db):
    """The test database migrated back to 0009 with the bundled report as 0001 made it (a
    transactional test before may have flushed it) and no steps (0010's reverse keeps them),
    forward to the latest again afterwards."""
    call_command("backpain_seed", verbosity=0)
    FollowUpStep.objects.all().delete()
    _migrate("0009_followups")
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _steps_by_key():
    steps = FollowUpStep.objects.filter(report__slug=seed.REPORT_SLUG)
    return {(s.language, s.position): (s.pk, s.delay_days, s.subject) for s in steps}


@pytest.mark.parametrize("before", ["never had any", "deleted every one"])
def test_0010_gives_a_sequence_that_is_off_and_empty_its_steps_back_and_forth(at_0009, before):
    """The real migration, forward from 0009: a sequence that is off with no steps gets the six,
    whether it never had any or its owner deleted every one (the two look alike: the how-to
    says so); back to 0009 and forward again adds none twice."""
    if before == "deleted every one":
        call_command("backpain_seed", verbosity=0)
        FollowUpStep.objects.all().delete()
    _migrate("0010_followups_seed")
    steps = _steps_by_key()
    expected = {(s.language, s.position): (s.delay_days, s.subject) for s in seed.followup_fields()}
    assert {key: value[1:] for key, value in steps.items()} == expected
    assert Report.objects.get(slug=seed.REPORT_SLUG).followups_enabled is False
    _migrate("0009_followups")
    _migrate("0010_followups_seed")
    assert _steps_by_key() == steps


@pytest.mark.parametrize("owner_made", ["turned on", "edited one", "deleted one", "re-slugged"])
def test_0010_leaves_a_sequence_its_owner_made_theirs(at_0009, owner_made):
    """The real migration never adds steps to a sequence that is on or has steps, nor to a
    report that is no longer the bundled one by its slug."""
    call_command("backpain_seed", verbosity=0)
    report = Report.objects.get(slug=seed.REPORT_SLUG)
    if owner_made == "turned on":
        FollowUpStep.objects.all().delete()
        Report.objects.filter(pk=report.pk).update(followups_enabled=True)
    elif owner_made == "edited one":
        FollowUpStep.objects.filter(language="en", position=1).update(subject="Mine")
    elif owner_made == "deleted one":
        FollowUpStep.objects.filter(language="de", position=2).delete()
    else:
        FollowUpStep.objects.all().delete()
        Report.objects.filter(pk=report.pk).update(slug="my-guide")
    before = sorted(FollowUpStep.objects.values_list("pk", "subject"))
    _migrate("0010_followups_seed")
    assert sorted(FollowUpStep.objects.values_list("pk", "subject")) == before


#: A site with two databases: the default one migrated and in use (its owner deleted the bundled
#: steps; a reader signed up again later than they consented), then ``migrate
#: --database=other``. Prints what each database holds.
MIGRATE_OTHER_DATABASE = """
import datetime, json, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "crispy_forms",
                    "crispy_bootstrap5", "backpain_report"],
    DATABASES={name: {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{sys.argv[1]}/{name}"}
               for name in ("default", "other")},
    USE_TZ=True,
    BACKPAIN_REPORT={"FROM_EMAIL": "a@example.com", "SITE_URL": "https://x.example"},
)
django.setup()
from django.core.management import call_command
from django.utils import timezone
from backpain_report.models import FollowUpStep, Report, Subscriber

call_command("migrate", verbosity=0)
FollowUpStep.objects.all().delete()
consented = timezone.now() - datetime.timedelta(days=30)
Subscriber.objects.create(email="r@example.com", email_canonical="r@example.com", name="R",
                          consented_at=consented, latest_signup_at=timezone.now())
call_command("migrate", database="other", verbosity=0)
print(json.dumps({
    name: {
        "reports": Report.objects.using(name).count(),
        "steps": FollowUpStep.objects.using(name).count(),
        "signed up again kept": Subscriber.objects.using(name)
        .exclude(latest_signup_at=consented).count(),
    }
    for name in ("default", "other")
}))
"""


@pytest.mark.heavy
def test_the_data_migrations_change_only_the_database_being_migrated(tmp_path):
    """``migrate --database=other`` gives ``other`` the report and its steps, and leaves the
    default database as it was: no steps its owner deleted come back, no reader's latest
    sign-up is overwritten (0001, 0007 and 0010 once wrote to the default database)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", MIGRATE_OTHER_DATABASE, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "default": {"reports": 1, "steps": 0, "signed up again kept": 1},
        "other": {"reports": 1, "steps": 6, "signed up again kept": 0},
    }


def test_the_howto_says_which_upgrade_gets_the_steps():
    """The how-to does not promise that a deleted step never comes back: an upgrade tells a
    sequence whose every step was deleted from one that never had any by nothing, and
    ``backpain_seed`` puts back any missing step on purpose."""
    text = " ".join(docs_section("howto/followups", "Turn the sequence on").split())
    assert "a step you deleted never comes back" not in text
    assert "has no steps at all" in text
    assert "one whose every step you deleted gets the six again, still off" in text


@pytest.mark.django_db
def test_as_migrate_left_it_the_form_names_no_followups(client, no_broker):
    """The six steps migrate adds change nothing for a site that never turns the sequence on:
    the form does not name the follow-ups, and a forged claim to them is not recorded."""
    from django.urls import reverse

    from backpain_report.models import Article, Subscriber

    article = Article.objects.get(slug=seed.ARTICLE_SLUG)
    assert FollowUpStep.objects.filter(report=article.report, is_active=True).count() == 6
    page = client.get(article.get_absolute_url()).content.decode()
    assert "follow-up emails" not in page and 'name="followups"' not in page
    data = {"name": "Ann", "email": "ann@example.com", "consent": "on", "followups": "1"}
    assert client.post(reverse("backpain_report:signup"), {**data, "article": article.slug})
    reader = Subscriber.objects.get(email_canonical="ann@example.com")
    assert not reader.followups_consented and reader.consent_version == "1"


@pytest.mark.django_db
def test_the_seed_creates_six_steps_with_the_sequence_off(report):
    report.refresh_from_db()
    assert report.followups_enabled is False
    steps = list(bundled_steps(report))
    assert sorted((s.language, s.position, s.delay_days) for s in steps) == [
        ("de", 1, 2), ("de", 2, 7), ("de", 3, 21), ("en", 1, 2), ("en", 2, 7), ("en", 3, 21),
    ]  # fmt: skip
    expected = {(s.language, s.position): s for s in seed.followup_fields()}
    for step in steps:
        assert step.subject == expected[step.language, step.position].subject
        assert step.body == expected[step.language, step.position].body
        assert step.is_active and step.edition == 1


@pytest.mark.django_db
def test_running_the_seed_twice_keeps_six_and_leaves_the_switch_alone(report, capsys):
    Report.objects.filter(pk=report.pk).update(followups_enabled=True)
    call_command("backpain_seed")
    call_command("backpain_seed")
    assert bundled_steps(report).count() == 6
    report.refresh_from_db()
    assert report.followups_enabled is True  # an owner's decision is theirs


@pytest.mark.django_db
def test_the_seed_keeps_edits_and_restore_puts_back_the_text(report, capsys):
    step = bundled_steps(report).get(language="de", delay_days=7)
    FollowUpStep.objects.filter(pk=step.pk).update(subject="edited", body="edited", delay_days=9)
    bundled_steps(report).filter(language="en", position=3).delete()
    call_command("backpain_seed")
    step.refresh_from_db()
    assert (step.subject, step.body, step.delay_days) == ("edited", "edited", 9)
    assert bundled_steps(report).count() == 6  # the deleted one is back
    call_command("backpain_seed", "--restore")
    step.refresh_from_db()
    bundled = seed.read_followups("de")[1]
    assert (step.subject, step.body, step.delay_days) == (bundled.subject, bundled.body, 7)
    assert bundled_steps(report).count() == 6
    report.refresh_from_db()
    assert report.followups_enabled is False


def test_restore_of_a_step_that_went_out_makes_a_new_edition(article):
    """The record keeps what each reader got: restoring a sent step's text is a new edition."""
    from backpain_report.models import Delivery, FollowUpEdition, FollowUpStep, Subscriber
    from backpain_report.services.content import content_seed
    from backpain_report.services.followups import step_save

    step = FollowUpStep.objects.filter(report=article.report, language="en").order_by("position")[0]
    original = step.body
    reader = Subscriber.objects.create(
        email="r@example.com", email_canonical="r@example.com", name="R"
    )
    step.body = "Edited by the owner."
    step_save(step)  # edition 1 never went out: still edition 1
    Delivery.objects.create(
        subscriber=reader,
        report=article.report,
        edition=step.edition,
        kind="followup",
        step=step,
        status="sent",
    )
    content_seed(overwrite=True)
    step.refresh_from_db()
    assert step.body == original and step.edition == 2
    assert FollowUpEdition.objects.get(step=step, edition=1).body == "Edited by the owner."
