"""The follow-up docs keep their promises (issue 25): every ``FOLLOWUP_*`` setting is in the
how-to with its schema default; the README has its short entry and links the page; the daylight
saving time sentences are what the scheduler computes; the development command the page names
exists; the task and the guarantee are where the reference pages say."""

from __future__ import annotations

import datetime
import re
import zoneinfo
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.utils import timezone

from backpain_report.config.schema import SETTINGS
from backpain_report.services.followups import SCHEDULE_TASK, followup_due

from .docs_text import ROOT, docs_page, docs_pages, docs_section

HOWTO = "howto/followups"
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- settings ---------------------------------------------------------------------------------


def test_every_followup_setting_is_in_the_howto_with_the_schema_default():
    names = [setting.name for setting in SETTINGS if setting.name.startswith("FOLLOWUP_")]
    assert len(names) >= 3
    rows = dict(
        re.findall(r"^\| `(FOLLOWUP_\w+)` \| (.+?) \|", docs_section(HOWTO, "Settings"), re.M)
    )
    schema = {s.name: s.default_shown() for s in SETTINGS if s.name.startswith("FOLLOWUP_")}
    assert rows == schema


# --- the README -------------------------------------------------------------------------------


def readme_entry() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Follow-up emails\n")[1].split("\n## ")[0]


def test_the_readme_has_a_short_entry_that_links_the_howto():
    entry = readme_entry()
    assert 3 <= len(entry.strip().splitlines()) <= 5
    assert "(docs/howto/followups.md)" in entry
    assert (ROOT / "docs" / "howto" / "followups.md").is_file()
    text = one_line(entry)
    for words in ("off until you turn it on", "consent named them", "`FOLLOWUP_SEND_HOUR`"):
        assert words in text, words


@pytest.mark.django_db
def test_the_sequence_is_off_by_default_as_the_readme_and_howto_say():
    from backpain_report.models import Report
    from backpain_report.seed import REPORT_SLUG

    assert Report._meta.get_field("followups_enabled").default is False
    assert Report.objects.get(slug=REPORT_SLUG).followups_enabled is False  # the bundled one
    assert "The sequence is **off by default**, also for the bundled report" in docs_page(HOWTO)


def test_the_howto_is_in_the_docs_table_of_contents():
    assert HOWTO in docs_pages()
    assert f"\n{HOWTO}\n" in docs_page("index")
    assert "(follow-up-emails)=" in docs_page(HOWTO)


# --- daylight saving time ---------------------------------------------------------------------


def last_sunday(year: int, month: int) -> datetime.date:
    """The last Sunday of ``month``: the day Europe changes its clocks (March and October)."""
    day = datetime.date(year, month + 1, 1) - datetime.timedelta(days=1)
    return day - datetime.timedelta(days=(day.weekday() - 6) % 7)


def due_on(day: datetime.date, hour: int, settings) -> datetime.datetime:
    """When the scheduler has a day-2 step fall due on ``day`` in Europe/Berlin at send hour
    ``hour`` (for a report sent two days before, at noon)."""
    settings.TIME_ZONE = "Europe/Berlin"
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "FOLLOWUP_SEND_HOUR": hour}
    sent = datetime.datetime.combine(day - datetime.timedelta(days=2), datetime.time(12))
    due = followup_due(sent.replace(tzinfo=BERLIN).astimezone(datetime.timezone.utc), 2)
    assert due.tzinfo is not None
    return due


def dst_sentences() -> str:
    return one_line(docs_section(HOWTO, "Time"))


def test_the_howto_says_how_daylight_saving_time_is_handled():
    text = dst_sentences()
    assert (
        "On the spring-forward day, a send hour that does not exist (in Europe/Berlin, 2 a.m. on "
        "the last Sunday of March) is taken as the next existing time: 3 a.m." in text
    )
    assert (
        "On the autumn day, a send hour that occurs twice (2 a.m. on the last Sunday of "
        "October) is the first of the two." in text
    )


def test_the_spring_forward_send_hour_is_the_next_existing_time(settings):
    """2 a.m. does not exist in Berlin on the last Sunday of March: the step goes at 3 a.m."""
    day = last_sunday(timezone.now().year + 1, 3)
    before = datetime.datetime.combine(day, datetime.time(1), tzinfo=BERLIN)
    after = datetime.datetime.combine(day, datetime.time(4), tzinfo=BERLIN)
    assert before.utcoffset() != after.utcoffset()  # the clocks change that night
    local = due_on(day, 2, settings).astimezone(BERLIN)
    assert (local.date(), local.hour, local.minute) == (day, 3, 0)


def test_the_autumn_send_hour_is_the_first_of_the_two(settings):
    """2 a.m. occurs twice in Berlin on the last Sunday of October: the step goes at the first
    (02:00 summer time, 00:00 UTC), not an hour later."""
    day = last_sunday(timezone.now().year + 1, 10)
    due = due_on(day, 2, settings)
    local = due.astimezone(BERLIN)
    assert (local.date(), local.hour, local.minute) == (day, 2, 0)
    first = datetime.datetime.combine(day, datetime.time(2), tzinfo=BERLIN)  # fold=0: the first
    second = first.replace(fold=1)
    assert first.astimezone(datetime.timezone.utc) != second.astimezone(datetime.timezone.utc)
    assert due.astimezone(datetime.timezone.utc) == first.astimezone(datetime.timezone.utc)


def test_the_default_send_hour_is_untouched_by_the_change(settings):
    """9 a.m. on either change's day is 9 a.m. local: the UTC moment moves by the hour."""
    year = timezone.now().year + 1
    for month in (3, 10):
        day = last_sunday(year, month)
        local = due_on(day, 9, settings).astimezone(BERLIN)
        assert (local.date(), local.hour, local.minute) == (day, 9, 0)
    assert "With the default of 9 a.m. neither case arises in Europe" in dst_sentences()


def test_the_readme_says_how_daylight_saving_time_is_handled():
    """The README's sentence, in its words, is what the tests above show of the scheduler."""
    text = one_line(readme_entry())
    assert (
        "on a daylight saving day an hour that does not exist is taken as the next that exists, "
        "and one that occurs twice as the first" in text
    )


# --- the command, the task, the promise -------------------------------------------------------


def in_two_days() -> str:
    """A moment two days on, as the how-to's command line writes it."""
    return (timezone.now() + datetime.timedelta(days=2)).strftime("%Y-%m-%dT10:00")


def test_the_command_the_howto_names_exists_with_its_option():
    howto = one_line(docs_page(HOWTO))
    assert "manage.py backpain_followups --as-of" in howto
    assert get_commands()["backpain_followups"] == "backpain_report"
    parser = load_command_class("backpain_report", "backpain_followups").create_parser(
        "manage.py", "backpain_followups"
    )
    later = in_two_days()
    assert parser.parse_args(["--as-of", later]).as_of == later
    assert "`backpain_followups [--as-of ISO8601]`" in docs_page("reference/commands")


@pytest.mark.django_db
def test_as_of_is_refused_with_debug_off_as_the_howto_says(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("backpain_followups", "--as-of", in_two_days())
    assert "`--as-of` is refused with `DEBUG` off" in one_line(docs_page(HOWTO))


def test_the_task_is_documented_and_the_sweep_runs_it(monkeypatch):
    from backpain_report import tasks

    assert tasks.schedule_followups.name == SCHEDULE_TASK == "backpain_report.schedule_followups"
    text = one_line(docs_page("reference/tasks-signals"))
    assert f"`{SCHEDULE_TASK}()`" in text and "`sweep_deliveries` runs it too" in text
    ran: list[object] = []
    monkeypatch.setattr(tasks, "followups_schedule", lambda *a, **k: ran.append(a) or 0)
    nothing = SimpleNamespace(found=0, published=0)
    for name in ("signups_sweep", "deliveries_sweep", "webhook_events_sweep"):
        monkeypatch.setattr(tasks, name, lambda *a, **k: nothing)
    monkeypatch.setattr(tasks, "page_views_flush", lambda *a, **k: None)
    tasks.sweep_deliveries()
    assert ran == [()]


def test_the_guarantee_is_stated_where_the_promises_are():
    text = one_line(
        docs_section("explanation/guarantees", "Follow-ups: at least once, never doubled")
    )
    for words in (
        "at most one email per delivery, except in the one window no outbox closes",
        "at most one delivery per reader and step",
        "two workers, two beat hosts",
        "`FOLLOWUP_RESUME_MAX_AGE`",
    ):
        assert words in text, words
    howto = one_line(docs_section(HOWTO, "What is promised"))
    assert "at most one email per delivery" in howto and "never send a step twice" in howto
