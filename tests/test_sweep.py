import datetime
import os
import signal
import threading
import time
from unittest import mock

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import ProgrammingError
from django.utils import timezone

from backpain_report import broker
from backpain_report.conf import app_settings
from backpain_report.delivery.sweep import deliveries_sweep, signups_sweep
from backpain_report.models import Delivery, PendingSignup, WebhookEndpoint, WebhookEvent


@pytest.fixture
def published(monkeypatch):
    sent = []

    def fake_send_task(name, args=None, **kwargs):
        sent.append((name, args[0]))

    monkeypatch.setattr(broker.current_app, "send_task", fake_send_task)
    return sent


def ago(seconds):
    return timezone.now() - datetime.timedelta(seconds=seconds)


def test_picks_up_what_was_lost_and_nothing_else(make_delivery, published):
    failed_publish = make_delivery(publish_failed_at=timezone.now())
    old_pending = make_delivery(enqueued_at=ago(600))
    make_delivery(enqueued_at=ago(1))  # fresh: its message is on the way
    make_delivery(status=Delivery.Status.SENT, enqueued_at=ago(600))
    stale_claim = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600))
    make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(5))
    make_delivery(
        enqueued_at=ago(600), next_attempt_at=timezone.now() + datetime.timedelta(hours=1)
    )

    result = deliveries_sweep()

    expected = {failed_publish.pk, old_pending.pk, stale_claim.pk}
    # One batch message: the worker sends them over one SMTP connection.
    assert published == [("backpain_report.deliver_batch", sorted(expected))]
    assert (result.found, result.published) == (3, 3)
    # Stamped as enqueued: an immediate second sweep finds nothing.
    assert deliveries_sweep().found == 0
    assert not Delivery.objects.filter(pk__in=expected, publish_failed_at__isnull=False).exists()


def test_broker_down_is_recorded_and_reported(make_delivery, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(broker.current_app, "send_task", broken)
    delivery = make_delivery(publish_failed_at=ago(5))
    with pytest.raises(CommandError, match="could not be published"):
        call_command("backpain_sweep")
    assert "1 stranded deliveries found, 0 re-enqueued" in capsys.readouterr().out
    delivery.refresh_from_db()
    assert delivery.publish_failed_at > ago(5)


def test_command_prints_a_summary(make_delivery, published, capsys):
    make_delivery(publish_failed_at=timezone.now())
    call_command("backpain_sweep")
    assert "1 stranded deliveries found, 1 re-enqueued" in capsys.readouterr().out
    assert published[0][0] == "backpain_report.deliver_report"


def test_command_republishes_stranded_webhook_events_too(db, published, capsys):
    """The command is the sweeper of a host without celery beat: webhook events whose message
    was lost are its job as much as deliveries are."""
    endpoint = WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", secret="whsec_x", event_types="x"
    )
    lost = WebhookEvent.objects.create(
        endpoint=endpoint,
        event_type="subscriber.created",
        webhook_id="msg_lost",
        body="{}",
        occurred_at=ago(60),
        enqueued_at=ago(float(app_settings.SWEEP_GRACE) + 60),
    )
    call_command("backpain_sweep")
    assert "1 stranded webhook events found, 1 re-enqueued" in capsys.readouterr().out
    assert published == [("backpain_report.deliver_webhook", lost.pk)]


def test_a_stale_claim_without_attempts_left_is_failed_not_republished(
    make_delivery, published, settings, capsys
):
    """Regression (issue 10, item 4): the sweep re-published a stale claim forever, whatever its
    attempts. One that used the last of MAX_ATTEMPTS ends failed with a clear error."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "MAX_ATTEMPTS": 5}
    lost_for_good = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600), attempts=5)
    one_left = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(3600), attempts=4)
    running = make_delivery(status=Delivery.Status.SENDING, claimed_at=ago(5), attempts=5)

    result = deliveries_sweep()

    assert published == [("backpain_report.deliver_report", one_left.pk)]
    assert (result.found, result.published, result.given_up) == (1, 1, 1)
    lost_for_good.refresh_from_db()
    assert lost_for_good.status == Delivery.Status.FAILED
    assert lost_for_good.last_error == (
        "Worker lost while sending (claim expired); giving up after 5 attempts."
    )
    running.refresh_from_db()
    assert running.status == Delivery.Status.SENDING and running.last_error == ""
    # Nothing left to give up on; the command says what it did.
    Delivery.objects.filter(pk=one_left.pk).update(claimed_at=ago(3600), attempts=9)
    call_command("backpain_sweep")
    assert "1 deliveries failed: their worker was lost on the last attempt." in (
        capsys.readouterr().out
    )
    assert deliveries_sweep().given_up == 0


def test_command_loops_with_every_and_stops_after_runs(make_delivery, published, capsys):
    """``--every`` sweeps again and again (a sweeper without beat); ``--runs`` bounds it."""
    make_delivery(publish_failed_at=timezone.now())
    call_command("backpain_sweep", "--every", "0.01", "--runs", "3")
    out = capsys.readouterr().out
    assert out.count("stranded deliveries found") == 3
    assert "1 stranded deliveries found, 1 re-enqueued" in out  # the first sweep took it
    assert len(published) == 1  # stamped: the next sweeps find it enqueued


def test_command_loop_goes_on_when_a_sweep_fails(make_delivery, monkeypatch, capsys):
    """In a loop a broker or database failure is reported and the next sweep still runs."""
    from django.db import OperationalError

    from backpain_report.management.commands import backpain_sweep

    def broken(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(broker.current_app, "send_task", broken)
    make_delivery(publish_failed_at=ago(5))
    calls = []
    real = backpain_sweep.signups_sweep

    def database_away_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(backpain_sweep, "signups_sweep", database_away_once)
    call_command("backpain_sweep", "--every", "0.01", "--runs", "3")  # no CommandError
    err = capsys.readouterr().err
    assert "Sweep failed: the database is unreachable (server closed" in err
    assert "could not be published: is the broker reachable?" in err
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runs", "2"], "--runs needs --every."),
        (["--every", "0"], "--every must be a positive, finite number of seconds."),
        (["--every", "-5"], "--every must be a positive, finite number of seconds."),
        # Regression: nan passed the check and swept without a pause (hammering the database),
        # inf and 1e309 (inf too) swept once and then crashed with an OverflowError traceback.
        (["--every", "nan"], "--every must be a positive, finite number of seconds."),
        (["--every=-nan"], "--every must be a positive, finite number of seconds."),
        (["--every", "inf"], "--every must be a positive, finite number of seconds."),
        (["--every", "1e309"], "--every must be a positive, finite number of seconds."),
        (["--every=-inf"], "--every must be a positive, finite number of seconds."),
        (["--every", "1", "--runs", "0"], "--runs must be at least 1."),
    ],
)
def test_command_loop_options_are_checked(db, argv, message, monkeypatch):
    from backpain_report.management.commands import backpain_sweep

    monkeypatch.setattr(backpain_sweep.Command, "sweep_once", mock.Mock(side_effect=AssertionError))
    with pytest.raises(CommandError, match=message.replace(".", r"\.")):
        call_command("backpain_sweep", *argv)


def _pending_signup(email: str, name: str, *, at: datetime.datetime) -> PendingSignup:
    """A sign-up waiting in the inbox, published at ``at``."""
    return PendingSignup.objects.create(
        email=email,
        email_canonical=email,
        name=name,
        consent_text="Yes",
        consent_version="1",
        consented_at=at,
        enqueued_at=at,
    )


def _republished_at(sweep, start, *, every: int = 2, until: int = 300) -> list[int]:
    """Seconds after ``start`` at which ``sweep`` (run every ``every`` s) re-published a row."""
    found = []
    with time_machine.travel(start, tick=False) as traveller:
        for second in range(every, until + 1, every):
            traveller.move_to(start + datetime.timedelta(seconds=second))
            if sweep().found:
                found.append(second)
    return found


def test_a_row_queued_behind_a_long_backlog_is_republished_at_doubling_intervals(
    make_delivery, published, settings
):
    """Regression (issue 15): with a queue longer than SWEEP_GRACE, every waiting row was
    re-published once per grace period (25 times in 5 minutes here), each copy lengthening the
    queue it waited in (on the multi-host tier the backlog grew until w2 could not reach a lost
    host's rows in time). Now the waits double: after the grace, then as long again as the row
    has waited."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 10}
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_delivery(enqueued_at=start)
    assert _republished_at(deliveries_sweep, start) == [12, 24, 48, 96, 192]


def test_a_signup_queued_behind_a_long_backlog_is_republished_at_doubling_intervals(db, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 10}
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        _pending_signup("queued@example.com", "Queued Reader", at=start)
    with mock.patch("backpain_report.delivery.sweep.publish_signups", side_effect=len):
        assert _republished_at(signups_sweep, start) == [12, 24, 48, 96, 192]


def test_a_lost_message_of_a_long_waiting_row_is_still_recovered(
    make_delivery, published, settings
):
    """The doubling delays, never drops: a row re-published after waiting 100 s is re-published
    again once 100 s more have passed, if that message was lost too."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 10}
    delivery = make_delivery()
    Delivery.objects.filter(pk=delivery.pk).update(created_at=ago(190), enqueued_at=ago(90))
    assert deliveries_sweep().found == 0  # 90 s since it was published, 100 s before: not yet
    Delivery.objects.filter(pk=delivery.pk).update(created_at=ago(210), enqueued_at=ago(110))
    assert deliveries_sweep().found == 1


# The rule, said in Python: the sweep's SQL must agree with it, row by row, on every backend.
def _republish_due(*, now, created, enqueued, next_attempt, grace, cap) -> bool:
    """A pending delivery whose publish did not fail (one that did is re-published once due)."""
    if next_attempt is not None and next_attempt > now:
        return False  # not due: its next attempt is still to come
    last_seen = max(
        enqueued or next_attempt or created, next_attempt or enqueued or created
    )  # a retry's message is due at next_attempt_at, not when it was enqueued
    since = now - last_seen
    waited_before = last_seen - (next_attempt or created)
    return since > grace and (since >= waited_before or since >= max(grace, cap))


_SECONDS = datetime.timedelta(seconds=1)
_CREATED = [-86400 * 400, -3600, -1000, -200, -100, -61, -60, 0, 30]
_ENQUEUED = [None, -86400 * 400, -2000, -1000, -999, -200, -100, -61, -60, -59, 0, 30]
_NEXT_ATTEMPT = [None, -3600, -1000, -150, -100, -60, 0, 60]


@pytest.mark.parametrize("use_tz", [True, False])
def test_the_sweep_picks_exactly_the_rows_the_rule_names(
    make_subscriber, report, published, settings, use_tz
):
    """Every mix of created, enqueued and next-attempt times (retries due or not, never
    enqueued, enqueued before created or before the retry was due, a year old): the SQL picks
    the rows the documented rule picks, at its boundaries too (run on PostgreSQL as well)."""
    settings.USE_TZ = use_tz
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SWEEP_GRACE": 60,
        "RETRY_BACKOFF_MAX": 1000,
    }
    now = timezone.now().replace(microsecond=0)
    offsets = {s for s in _CREATED + _ENQUEUED + _NEXT_ATTEMPT if s is not None}
    at = {None: None} | {s: now + s * _SECONDS for s in offsets}
    subscriber = make_subscriber()
    grid = [
        (created, enqueued, next_attempt)
        for created in _CREATED
        for enqueued in _ENQUEUED
        for next_attempt in _NEXT_ATTEMPT
    ]
    rows = Delivery.objects.bulk_create(
        Delivery(
            subscriber=subscriber,
            report=report,
            edition=report.edition,
            reason=Delivery.Reason.RESEND,
            enqueued_at=at[enqueued],
            next_attempt_at=at[next_attempt],
        )
        for _created, enqueued, next_attempt in grid
    )
    expected = set()
    for row, (created, enqueued, next_attempt) in zip(rows, grid, strict=True):
        Delivery.objects.filter(pk=row.pk).update(created_at=at[created])
        if _republish_due(
            now=now,
            created=at[created],
            enqueued=at[enqueued],
            next_attempt=at[next_attempt],
            grace=60 * _SECONDS,
            cap=1000 * _SECONDS,
        ):
            expected.add(row.pk)
    assert 0 < len(expected) < len(rows)
    with time_machine.travel(now, tick=False):
        deliveries_sweep(limit=len(rows))
    assert {pk for _task, batch in published for pk in batch} == expected


def test_a_retry_is_not_republished_the_moment_it_falls_due(make_delivery, published, settings):
    """A retry is published with a countdown (its message arrives at next_attempt_at): the
    sweep gives that message the grace too. It used to count the grace from the publish, so
    every retry waiting longer than SWEEP_GRACE got a second message the moment it fell due,
    the duplicates the doubling is there to avoid (a mail server away for an hour doubled the
    queue)."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 10}
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_delivery(
            attempts=1, enqueued_at=start, next_attempt_at=start + datetime.timedelta(seconds=100)
        )
    # Due at 100 s: re-published after the grace from then, then doubling from when it was due.
    assert _republished_at(deliveries_sweep, start) == [112, 124, 148, 196, 292]


def test_the_doubling_stops_at_retry_backoff_max(make_delivery, published, settings):
    """A row queued behind a backlog is re-published at doubling intervals up to
    RETRY_BACKOFF_MAX, then once every RETRY_BACKOFF_MAX: a message lost after a long wait is
    recovered within that, not within the row's whole age again."""
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SWEEP_GRACE": 10,
        "RETRY_BACKOFF_MAX": 50,
    }
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_delivery(enqueued_at=start)
    assert _republished_at(deliveries_sweep, start) == [12, 24, 48, 96, 146, 196, 246, 296]


def test_a_failed_delivery_retried_months_later_is_recovered_within_the_cap(
    make_delivery, published, settings, django_capture_on_commit_callbacks
):
    """Regression: staff retry a failed delivery created three months ago, and that message is
    lost. The row's wait was counted from its creation, so the sweep left it for three more
    months; now it is re-published RETRY_BACKOFF_MAX after (an hour by default)."""
    from backpain_report.services.deliveries import deliveries_retry_failed

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 60}
    start = timezone.now()
    delivery = make_delivery(status=Delivery.Status.FAILED, attempts=5)
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=start - datetime.timedelta(days=90), enqueued_at=ago(86400 * 89)
    )
    with (
        time_machine.travel(start, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert deliveries_retry_failed(Delivery.objects.filter(pk=delivery.pk)) == 1
    assert len(published) == 1  # the message that is lost
    hours = _republished_at(deliveries_sweep, start, every=600, until=3 * 3600)
    assert hours == [3600, 7200, 10800]


def test_a_signup_published_after_a_long_broker_outage_is_recovered_within_the_cap(db, settings):
    """A sign-up made when the broker went away for three days is published when it is back;
    if that message is lost too, it is re-published within RETRY_BACKOFF_MAX, not three days
    later."""
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "SWEEP_GRACE": 60}
    start = timezone.now()
    with time_machine.travel(start - datetime.timedelta(days=3), tick=False):
        PendingSignup.objects.create(
            email="patient@example.com",
            email_canonical="patient@example.com",
            name="Patient Reader",
            consent_text="Yes",
            consent_version="1",
            consented_at=timezone.now(),
            enqueued_at=timezone.now(),
            publish_failed_at=timezone.now(),
        )
    with mock.patch("backpain_report.delivery.sweep.publish_signups", side_effect=len):
        with time_machine.travel(start, tick=False):
            assert signups_sweep().found == 1  # the broker is back: published (and lost)
        assert _republished_at(signups_sweep, start, every=600, until=2 * 3600) == [3600, 7200]


@pytest.mark.parametrize("cap", [1e300, float("inf")])
def test_a_retry_backoff_max_past_the_calendar_means_no_cap(
    make_delivery, published, settings, cap
):
    settings.BACKPAIN_REPORT = {
        **settings.BACKPAIN_REPORT,
        "SWEEP_GRACE": 10,
        "RETRY_BACKOFF_MAX": cap,
    }
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_delivery(enqueued_at=start)
    assert _republished_at(deliveries_sweep, start) == [12, 24, 48, 96, 192]


@pytest.fixture
def our_signal_handlers():
    """The process's SIGTERM and SIGINT handlers, checked unchanged after the test."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield before
    after = {signum: signal.getsignal(signum) for signum in before}
    for signum, handler in before.items():
        signal.signal(signum, handler)  # (restored, so one failure does not leak into others)
    assert after == before


def test_the_loop_puts_the_signal_handlers_back(make_delivery, published, our_signal_handlers):
    """Regression: the loop left its own SIGTERM and SIGINT handlers installed, so a process
    that ran it (a test run, a script calling call_command) ignored Ctrl-C from then on."""
    call_command("backpain_sweep", "--every", "0.01", "--runs", "2")
    call_command("backpain_sweep", "--every", "0.01", "--runs", "1")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_sweep_lets_it_finish_then_stops(
    db, monkeypatch, our_signal_handlers, signum
):
    from backpain_report.management.commands import backpain_sweep

    sweeps = []

    def sweep_signalled_midway(self, limit):
        sweeps.append("started")
        os.kill(os.getpid(), signum)
        sweeps.append("finished")
        return 0

    monkeypatch.setattr(backpain_sweep.Command, "sweep_once", sweep_signalled_midway)
    call_command("backpain_sweep", "--every", "0.01")  # returns: no exception, exit status 0
    assert sweeps == ["started", "finished"]


def test_a_second_signal_stops_a_sweep_that_hangs(db, monkeypatch, our_signal_handlers):
    """The first Ctrl-C waits for the sweep under way; a second one interrupts it, as Ctrl-C
    would without the loop (the first alone would leave no way to stop a hung sweep)."""
    from backpain_report.management.commands import backpain_sweep

    def hanging_sweep(self, limit):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the second Ctrl-C did not interrupt the sweep")

    monkeypatch.setattr(backpain_sweep.Command, "sweep_once", hanging_sweep)
    with pytest.raises(KeyboardInterrupt):
        call_command("backpain_sweep", "--every", "60")


@pytest.mark.parametrize("every", ["1e10", "1e300"])
def test_a_long_interval_waits_and_still_stops_on_a_signal(
    make_delivery, published, our_signal_handlers, every
):
    """Regression: ``--every 1e10`` (or anything past threading.TIMEOUT_MAX) crashed with an
    OverflowError traceback after the first sweep."""
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    started = time.monotonic()
    try:
        call_command("backpain_sweep", "--every", every)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5


def _example_env(var_dir) -> dict[str, str]:
    from tests.example_env import EXAMPLE_SITE_ENV

    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in EXAMPLE_SITE_ENV and k not in ("DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED")
    }
    return {**environ, "EXAMPLE_VAR_DIR": str(var_dir), "CELERY_BROKER_URL": "memory://"}


def _read_lines(stream, count: int, timeout: float) -> list[str]:
    """The next ``count`` lines of the binary pipe ``stream``, as they arrive (fewer when no
    more come within ``timeout`` seconds)."""
    import selectors

    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while data.count(b"\n") < count and selector.select(deadline - time.monotonic()):
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines(keepends=True)


@pytest.mark.heavy
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_loop_run_by_manage_py_logs_each_sweep_and_stops_cleanly_on_a_signal(tmp_path, signum):
    """As a service runs it: the example site's manage.py, output to a pipe (a journal). Each
    sweep's lines arrive as it ends (not when an 8 KB buffer fills), and SIGTERM or Ctrl-C
    ends the loop with status 0 and no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    manage = Path(__file__).resolve().parent.parent / "example_project" / "manage.py"
    env = _example_env(tmp_path / "var")
    migrated = subprocess.run(
        [sys.executable, str(manage), "migrate", "-v0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    loop = subprocess.Popen(
        [sys.executable, "-W", "error", str(manage), "backpain_sweep", "--every", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert _read_lines(loop.stdout, 3, timeout=30) == [
            "Sweep: 0 stranded sign-ups found, 0 re-enqueued.\n",
            "Sweep: 0 stranded deliveries found, 0 re-enqueued.\n",
            "Sweep: 0 stranded webhook events found, 0 re-enqueued.\n",
        ]
        loop.send_signal(signum)
        assert loop.wait(timeout=10) == 0
    finally:
        loop.kill()
        out, err = loop.communicate()
    assert not err and not out, err.decode()


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug in a sweep"), ProgrammingError('relation "backpain_report_delivery"')],
)
def test_command_loop_goes_on_after_an_unexpected_error_and_shows_its_traceback(
    db, monkeypatch, capsys, error
):
    """Regression: only a DatabaseError was caught, so any other exception (a bug, a library's
    own error type) ended the loop with a traceback, and with it the sweeping, until someone
    restarted it. Now, as celery beat does with a failing task, the error is shown in full (a
    database error that is no outage too: a missing migration) and the next sweep runs."""
    from backpain_report.management.commands import backpain_sweep

    sweeps = mock.Mock(side_effect=[error, 0, 0])
    monkeypatch.setattr(backpain_sweep.Command, "sweep_once", lambda self, limit: sweeps())
    call_command("backpain_sweep", "--every", "0.01", "--runs", "3")
    err = capsys.readouterr().err
    assert sweeps.call_count == 3
    assert err.startswith("Sweep failed:\nTraceback (most recent call last):")
    assert f"{type(error).__name__}: {error}" in err
    assert "unreachable" not in err


# --- The worker's log (issue 23, item 5): quiet when the sweep found nothing ------------------


def test_the_sweep_task_logs_nothing_when_it_found_nothing(make_delivery, published, caplog):
    from backpain_report.tasks import sweep_deliveries

    make_delivery(enqueued_at=ago(1))  # fresh: its message is on the way
    caplog.set_level("DEBUG")
    assert sweep_deliveries() == {"found": 0, "published": 0}
    assert [r for r in caplog.records if r.levelno >= 20] == []


def test_the_sweep_task_logs_one_line_when_it_republished(make_delivery, published, caplog):
    from backpain_report.tasks import sweep_deliveries

    make_delivery(publish_failed_at=timezone.now())
    make_delivery(enqueued_at=ago(600))
    _pending_signup("ann@example.com", "Ann", at=ago(600))
    caplog.set_level("INFO")
    assert sweep_deliveries() == {"found": 3, "published": 3}
    [record] = [r for r in caplog.records if r.levelno >= 20]
    assert (record.name, record.levelname) == ("backpain_report.delivery.sweep", "INFO")
    assert record.getMessage() == (
        "Sweep: re-published 1 of 1 sign-ups and 2 of 2 deliveries whose message was lost."
    )
