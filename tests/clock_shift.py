"""``--clock-shift-days=N``: run the tests with the clock N days ahead of the real one.

A test that writes a date near today into a payload, fixture or expected value passes today
and fails once that date ages out of the window it was written for (issue 20: a bounce
dated the day before a run stopped counting the day after). Running the suite with the clock
moved far ahead makes every such date age out now, while the test's author is still here: ``make
test-future`` does, and CI runs it. A test that needs a fixed "now" pins it with
``time_machine.travel`` (nested travel overrides this shift), and builds everything else
from ``timezone.now()``.

Only this process's clock moves (time-machine patches ``time.time``, ``datetime.now`` and
friends); subprocesses and database servers keep the real clock, which is why the shifted run
is the unit tier (SQLite, no subprocess that reads the time).
"""

from __future__ import annotations

import datetime

import pytest

_traveller = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-shift-days",
        type=int,
        default=0,
        metavar="N",
        help="run with the clock N days ahead of now (catches dates written into tests)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _traveller
    days = config.getoption("--clock-shift-days")
    if not days:
        return
    import time_machine

    shifted = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    _traveller = time_machine.travel(shifted, tick=True)
    _traveller.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _traveller
    if _traveller is not None:
        _traveller.stop()
        _traveller = None


def pytest_report_header(config: pytest.Config) -> str | None:
    days = config.getoption("--clock-shift-days")
    if not days:
        return None
    return f"clock shifted {days} days ahead: now is {datetime.datetime.now().isoformat()}"
