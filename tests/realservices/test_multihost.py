"""The example site on five hosts (network namespaces): one worker host cut off mid-batch, the
broker restarted mid-batch (every reader gets their report once), and the follow-up emails
scheduled by two sweepers on two hosts at once (every reader gets each step once).

The hosts (:mod:`.support.multihost`): **db** (a private PostgreSQL, a private Redis as broker
and cache, an SMTP sink), **web1** and **web2** (gunicorn), **w1** (a Celery worker and celery
beat, which schedules the sweep task) and **w2** (a Celery worker and a loop of
``manage.py backpain_sweep``), and a **client** that posts the sign-ups. Delivery timings are
short (``CLAIM_LEASE`` 10 s, ``SWEEP_GRACE`` 60 s, the default, the sweep every 2 s on both hosts).

Each fault scenario posts 1,000 sign-ups of new addresses plus 50 of 10 addresses (5 each), spread
over both web hosts, and prints a ``MULTIHOST-RESULT`` line: sign-ups, reports expected,
delivered, lost, doubled. What holds, said precisely (docs, "How delivery works"):

- nothing is lost, and no address ever gets two *different* reports;
- an email is sent twice only in the one window no outbox closes: the mail server accepted it
  and the sending host lost the database before recording it. A cut can land there for the
  messages w1 was handing over at that instant (at most its 2 pool processes); such a copy has
  the same Message-ID as the first. The test counts them, checks each is such a message, and
  expects none otherwise (the broker restart loses no claim, so there it must be 0).

The follow-up scenario signs up a smaller batch (``FOLLOWUP_READERS``) under the consent that
names the follow-ups, moves the clock on by SQL to each step's day in turn, and checks that the
two sweepers (beat's task and the command loop, both running the scheduler every 2 s) send each
step to each reader exactly once, none before its day; its ``MULTIHOST-RESULT`` line counts
readers, steps, follow-ups expected, sent, lost and doubled.

Who claimed, renewed and recorded each row is read from the database's claim log (a trigger,
see :mod:`.support.multihost`), not inferred from timing, and so is who made each follow-up
delivery; copies are told apart by the address they came from. Messages are counted only once
no SMTP bytes are left in any socket (a cut connection's bytes are sent when the link is back,
up to two minutes later).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .support import netns
from .support.gating import require_service, unavailable
from .support.multihost import CLAIM_LEASE, Cluster, SignupRun, cleaned_up, people
from .support.processes import wait_until
from .support.stack import ROOT
from .support.web import ARTICLE_PATH, Client, form_inputs

pytestmark = [pytest.mark.services, pytest.mark.multihost, pytest.mark.timeout(900)]

UNIQUE = int(os.environ.get("BACKPAIN_MULTIHOST_N") or 1000)  # new addresses per scenario
REPEATED_ADDRESSES = 10
REPEATS_EACH = 5
SETTLE_TIMEOUT = 420.0
LATE_COPIES_WAIT = 8.0  # after the sockets are empty: time for the sink to write what it read
MAIL_QUIET_TIMEOUT = 150.0  # TCP's retransmission backoff tops out at 120 s
CUT_READ_DELAY = 2.0  # after the cut: statements w1 had already sent are committed or not
W1_POOL = 2
# Seconds past the lease for w2 to reach the re-published claims: their messages queue behind
# the batch still waiting (FIFO), so this is bounded by the backlog, not by the lease.
TAKEOVER_WAIT = 180


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_service("postgres")  # the tier runs exactly when the other real-service tiers do
    problem = netns.problem()
    if problem:
        unavailable(f"multi-host tier: {problem}")
    cluster = Cluster(
        tmp_path_factory.mktemp("multihost"), ROOT / "test-artefacts" / "realservices" / "multihost"
    )
    try:
        with cleaned_up(cluster) as stragglers:
            cluster.start()
            for host in ("w1", "w2"):
                cluster.worker_start(host)
            cluster.sweepers_start()
            yield cluster
    finally:
        leftover = netns.leftovers(cluster.lan.prefix)
        assert not leftover, f"namespaces left behind: {leftover}"
    assert not stragglers, f"processes still running in the hosts at the end: {stragglers}"


def batch(tag: str) -> tuple[list[tuple[str, str]], set[str]]:
    """The scenario's sign-ups (shuffled: repeats spread over the batch) and its addresses."""
    unique = people(tag, UNIQUE)
    repeated = people(f"{tag}-again", REPEATED_ADDRESSES)
    signups = unique + repeated * REPEATS_EACH
    random.Random(tag).shuffle(signups)
    return signups, {email for _name, email in unique + repeated}


class Background:
    """Run the sign-ups in a thread while the test breaks things."""

    def __init__(self, cluster: Cluster, signups: list[tuple[str, str]]) -> None:
        self.run = SignupRun()
        self._thread = threading.Thread(target=self._go, args=(cluster, signups), daemon=True)
        self._thread.start()

    def _go(self, cluster: Cluster, signups: list[tuple[str, str]]) -> None:
        self.run = cluster.sign_up(signups)

    def join(self) -> SignupRun:
        self._thread.join(timeout=600)
        assert not self._thread.is_alive(), "the sign-ups did not finish within 10 minutes"
        return self.run


def wait_for_reports(cluster: Cluster, emails: set[str], count: int, timeout: float) -> int:
    """Wait until ``count`` of ``emails`` have a report; how many have one."""
    deadline = time.monotonic() + timeout
    while True:
        arrived = cluster.sink.per_address()
        got = sum(1 for email in emails if arrived[email])
        if got >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def wait_mail_quiet(cluster: Cluster) -> None:
    """Wait until no SMTP bytes are left in any host's sockets, then for the sink to write what
    it read: no copy can arrive after this."""
    assert wait_until(lambda: cluster.mail_queued() == 0, timeout=MAIL_QUIET_TIMEOUT, interval=1), (
        f"SMTP bytes still queued after {MAIL_QUIET_TIMEOUT:.0f} s"
    )
    time.sleep(LATE_COPIES_WAIT)


def outcome(cluster: Cluster, name: str, signups: int, emails: set[str]) -> dict[str, int]:
    counts = cluster.sink.per_address()
    result = {
        "sign-ups": signups,
        "expected": len(emails),
        "delivered": sum(1 for email in emails if counts[email] >= 1),
        "lost": sum(1 for email in emails if counts[email] == 0),
        "doubled": sum(counts[email] - 1 for email in emails if counts[email] > 1),
        "strays": sum(
            n for email, n in counts.items() if email.startswith(name) and email not in emails
        ),
    }
    print(f"MULTIHOST-RESULT {name} " + " ".join(f"{k}={v}" for k, v in result.items()))
    return result


def assert_web_clean(cluster: Cluster, run: SignupRun, signups: int) -> None:
    assert not run.errors, f"sign-ups that got no answer: {run.errors[:5]}"
    assert sum(run.statuses.values()) == signups, run.statuses
    assert run.server_errors == 0, f"answers: {dict(run.statuses)}"
    assert cluster.web_server_errors() == 0, "a web host logged a 5xx"
    assert run.statuses[303] >= UNIQUE, f"answers: {dict(run.statuses)}"
    assert set(run.per_host) == {"web1", "web2"}, run.per_host


def cut_while_w1_holds_a_claim(cluster: Cluster) -> tuple[float, dict[int, dict]]:
    """Cut w1 off at a moment it is sending; (when, the claims it was holding).

    Whose a claim is comes from the claim log, not from how long it lasted (a w2 render slowed
    past a few seconds by a busy machine would pass for w1's): once w1 is cut off it changes
    nothing, so the rows ``sending`` under a claim w1 made or renewed are its claims. If it
    happened to hold none, its link comes back and the cut is tried again.
    """
    for _attempt in range(5):
        wait_until(lambda: cluster.held_by("w1"), timeout=60, interval=0.2)
        cut_at = time.time()
        cluster.lan.cut("w1")
        time.sleep(CUT_READ_DELAY)
        held = cluster.held_by("w1")
        if held:
            return cut_at, held
        cluster.lan.restore("w1")
        time.sleep(1)
    pytest.fail("w1 held no claim at any of 5 cuts: is its worker sending?")


def test_worker_host_cut_off_longer_than_the_lease(cluster):
    """Fault: mid-batch, w1's switch port goes down (w1 is not told; its connections hang) for
    longer than CLAIM_LEASE, then comes back.

    Expected: no 5xx from either web host; w2's sweep re-publishes w1's claims once the lease is
    over and w2 sends them while w1 is still cut off; both sweepers (beat's task and the command
    loop) re-publish rows; every address gets its report, none twice but for a message w1 was
    handing over at the cut (same Message-ID), and every row ends sent.
    """
    signups, emails = batch("cut")
    runs_before = cluster.sweep_runs()
    background = Background(cluster, signups)
    assert wait_for_reports(cluster, emails, len(emails) // 4, timeout=240) >= len(emails) // 4, (
        cluster.diagnostics()
    )
    cut_at, held = cut_while_w1_holds_a_claim(cluster)
    try:
        # w2 takes the held rows over once the lease is up, while w1 is still cut off.
        deadline = cut_at + CLAIM_LEASE + TAKEOVER_WAIT
        while time.time() < deadline:
            rows = cluster.delivery_rows(held)
            if all(row["status"] == "sent" for row in rows.values()):
                break
            time.sleep(0.5)
        taken_over = cluster.delivery_rows(held)
        time.sleep(max(0.0, cut_at + CLAIM_LEASE + 5 - time.time()))  # longer than the lease
    finally:
        cluster.lan.restore("w1")
    restored_at = time.time()
    run = background.join()
    statuses = cluster.wait_settled(emails, timeout=SETTLE_TIMEOUT)
    wait_mail_quiet(cluster)
    result = outcome(cluster, "cut", len(signups), emails)
    print(
        f"w1 cut off holding claims {sorted(held)}; link back after "
        f"{restored_at - cut_at:.1f} s; "
        f"sweeps re-published {cluster.sweeps()}; sign-ups answered {dict(run.statuses)} "
        f"in {run.finished - run.started:.1f} s"
    )

    assert_web_clean(cluster, run, len(signups))
    assert statuses == {"sent": len(emails)}, f"{dict(statuses)}\n{cluster.diagnostics()}"
    assert result["lost"] == 0, cluster.diagnostics()
    assert result["strays"] == 0
    # w2 took over every claim w1 held, after the lease and before w1 came back; w1, back,
    # recorded nothing on them (the claim log says who changed each row, and when).
    sent_by_w2 = cluster.sent_by("w2")
    history = cluster.claim_log(held)
    for pk, before in held.items():
        row, events = taken_over[pk], history[pk]
        assert row["status"] == "sent", f"delivery {pk} not sent while w1 was cut off: {row}"
        new_claims = [
            e for e in events if e["claimed_at"] and e["claimed_at"] > before["claimed_at"]
        ]
        takeover = new_claims[0] if new_claims else None
        assert takeover is not None and takeover["status"] == "sending", (before, events)
        assert takeover["host"] == "w2", f"delivery {pk} was not taken over by w2: {events}"
        assert takeover["attempts"] == before["attempts"] + 1, (before, events)
        assert takeover["claimed_at"] >= before["claimed_at"] + _seconds(CLAIM_LEASE), events
        sent = [e for e in events if e["status"] == "sent"]
        assert [e["host"] for e in sent] == ["w2"], f"delivery {pk} recorded sent by {sent}"
        assert sent[0]["at"].timestamp() < restored_at, (sent, restored_at)
        late = [
            e for e in events if e["host"] == "w1" and e["at"].timestamp() > cut_at + CUT_READ_DELAY
        ]
        assert not late, f"w1 changed delivery {pk} after it was cut off: {late}"
        assert pk in sent_by_w2, f"delivery {pk} was not logged sent by w2"
    # Both sweepers ran side by side during the scenario, and between them re-published w1's
    # claims. (Which of them re-publishes a row is a race, and the beat's host is the one cut
    # off: requiring rows from each would pass only on re-publishes of rows that merely waited
    # long in a backlog, or fail with a small batch.)
    runs = cluster.sweep_runs()
    assert all(runs[k] > runs_before[k] for k in runs), f"a sweeper never ran: {runs_before} {runs}"
    assert sum(cluster.sweeps().values()) >= len(held), cluster.sweeps()
    # Duplicates: only a message w1 was handing over when its link went (its claim renewed,
    # which happens right before the hand-over), one copy from w1 and the other from w2, with
    # one Message-ID. (w1's copy may reach the sink only once the link is back.)
    messages = cluster.sink.messages()
    doubled = _doubled(messages, emails)
    assert len(doubled) <= W1_POOL, doubled
    held_by_email = {row["email"]: pk for pk, row in held.items()}
    peers = {cluster.address("w1"), cluster.address("w2")}
    for email, copies in doubled.items():
        assert email in held_by_email, f"{email} got two copies but w1 was not sending it: {copies}"
        assert len(copies) == 2, copies
        assert len({m["message_id"] for m in copies}) == 1, copies
        assert {m["peer"] for m in copies} == peers, copies
        pk = held_by_email[email]
        claims = [e for e in history[pk] if e["attempts"] == held[pk]["attempts"]]
        assert len(claims) >= 2 and claims[-1]["host"] == "w1", (
            f"{email}: w1 never renewed its claim, so it was not handing the message over: "
            f"{history[pk]}"
        )


def test_broker_restarted_mid_batch(cluster):
    """Fault: mid-batch, the db host's Redis (broker and cache) is shut down for 3 s and started
    empty: every queued and unacknowledged message is gone, and sign-ups posted meanwhile cannot
    publish theirs.

    Expected: no 5xx; the sweeps re-publish the lost sign-ups and deliveries; every address gets
    exactly one report.
    """
    signups, emails = batch("broker")
    before = cluster.sweeps()
    background = Background(cluster, signups)
    assert wait_for_reports(cluster, emails, len(emails) // 4, timeout=240) >= len(emails) // 4, (
        cluster.diagnostics()
    )
    assert cluster.redis is not None
    lost = cluster.redis_messages()  # what the restart throws away
    cluster.redis.stop()
    time.sleep(3)
    cluster.redis.start()
    run = background.join()
    statuses = cluster.wait_settled(emails, timeout=SETTLE_TIMEOUT)
    wait_mail_quiet(cluster)
    result = outcome(cluster, "broker", len(signups), emails)
    after = cluster.sweeps()
    print(
        f"the restart lost {lost} messages; sweeps re-published {after} (before the scenario: "
        f"{before}); answers {dict(run.statuses)}"
    )

    assert_web_clean(cluster, run, len(signups))
    assert statuses == {"sent": len(emails)}, f"{dict(statuses)}\n{cluster.diagnostics()}"
    assert result["lost"] == result["doubled"] == result["strays"] == 0, cluster.diagnostics()
    assert sum(after.values()) > sum(before.values()), "the sweeps re-published nothing"
    assert lost > 0, "the broker held no message when it was restarted: nothing was lost"


FOLLOWUP_READERS = 100
PAGE_GENERATION_RECHECK = 1.0  # pagecache.GENERATION_RECHECK: a process's page is this fresh
FOLLOWUP_WAIT = 120.0  # per step: the next sweep (2 s) and the sending of one email per reader
_SWITCH_SEQUENCE = """
import json
from backpain_report import selectors
from backpain_report.models import Report
from backpain_report.services import content
report = Report.objects.get(pk=selectors.article_for_signup(slug=None).report_id)
content.followups_seed(report=report)  # migrate made them: a no-op unless one was removed
report.followups_enabled = {on}
content.report_save(report=report, changed_fields=["followups_enabled"])
print(json.dumps(report.pk))
"""


def sequence_switch(cluster: Cluster, *, on: bool) -> int:
    """Tick (or untick) the bundled report's *Send the follow-up sequence*, saved as the admin
    does, from a shell on w1, with the bundled steps ``backpain_seed`` makes (those missing);
    the report's id. The save drops the stored article pages."""
    code = _SWITCH_SEQUENCE.format(on=on)
    return json.loads(cluster.manage_on("w1", "shell", "-c", code).strip().splitlines()[-1])


def form_offers_followups(cluster: Cluster) -> bool:
    """Whether the article's form, on both web hosts, names the follow-ups (``followups=1``)."""
    with netns.inside(cluster.lan.hosts["client"].namespace):
        pages = [Client(cluster.web_url(host)).get(ARTICLE_PATH) for host in ("web1", "web2")]
    return all(form_inputs(page.body).get("followups") == "1" for page in pages)


def english_steps(cluster: Cluster, report: int) -> list[dict]:
    """The report's active steps an English reader gets (the seed's days 2, 7 and 21)."""
    return cluster.query(
        "SELECT id, delay_days, subject FROM backpain_report_followupstep "
        "WHERE report_id = %s AND is_active AND language IN ('', 'en') ORDER BY delay_days",
        (report,),
    )


def days_pass(cluster: Cluster, emails: set[str], report: int, days: int) -> None:
    """Move the clock ``days`` on for these readers: their deliveries were sent, and the
    report's steps last scheduled (or made), that much earlier. One statement, so a sweeper
    sees all of it or none; a sweeper holding a step makes the update wait, and the shift then
    applies to the cursor it left. (The scheduler reads only these times.)"""
    cluster.query(
        """
        WITH steps AS (
            UPDATE backpain_report_followupstep
            SET scheduled_through = scheduled_through - make_interval(days => %(days)s),
                created_at = created_at - make_interval(days => %(days)s)
            WHERE report_id = %(report)s RETURNING id
        ), sent AS (
            UPDATE backpain_report_delivery d
            SET sent_at = d.sent_at - make_interval(days => %(days)s)
            FROM backpain_report_subscriber s
            WHERE s.id = d.subscriber_id AND s.email_canonical = ANY(%(emails)s)
                AND d.sent_at IS NOT NULL
            RETURNING d.id
        )
        SELECT (SELECT count(*) FROM steps) AS steps, (SELECT count(*) FROM sent) AS sent
        """,
        {"days": days, "report": report, "emails": sorted(emails)},
    )


def followups_sent(cluster: Cluster, emails: set[str]) -> Counter[tuple[int, str]]:
    """Follow-up delivery rows of these readers: ``(step id, status) -> rows``."""
    rows = cluster.query(
        """
        SELECT d.step_id, d.status, count(*) AS n FROM backpain_report_delivery d
        JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
        WHERE s.email_canonical = ANY(%s) AND d.kind = 'followup' GROUP BY 1, 2
        """,
        (sorted(emails),),
    )
    return Counter({(row["step_id"], row["status"]): row["n"] for row in rows})


def scheduler_lines(cluster: Cluster) -> dict[str, list[str]]:
    """The scheduler's log lines per worker host and sweeper."""
    found: dict[str, list[str]] = {}
    for host, role in (("w1", "worker"), ("w2", "worker"), ("w2", "sweep-loop")):
        lines = [line for line in cluster.log_lines(host, role) if "Follow-up step " in line]
        found[f"{host} {role}"] = [line.split(": ", 1)[-1] for line in lines]
    return found


def test_followups_never_doubled_by_two_beat_hosts(cluster):
    """Issue 25's promise: two beat hosts never double a follow-up email.

    The bundled report's sequence is turned on (from a shell on w1, as in the admin);
    ``FOLLOWUP_READERS`` readers sign up over both web hosts under the consent that now names
    the follow-ups and get their report; then the clock moves on by SQL to the day after each
    English step's day in turn (2, 7, 21: each falls due within ``FOLLOWUP_RESUME_MAX_AGE``, as
    with real days), while both sweepers (beat's task on either worker, the command loop on w2)
    run the scheduler every 2 s.

    Expected: each reader consented to the follow-ups; each step goes only once it is due, to
    every reader exactly once (one row each, one message per address and subject in the sink);
    both sweepers ran during the steps; no 5xx.
    """
    report = sequence_switch(cluster, on=True)
    try:
        _followups_scenario(cluster, report)
    finally:
        sequence_switch(cluster, on=False)


def _followups_scenario(cluster: Cluster, report: int) -> None:
    started = time.monotonic()
    steps = english_steps(cluster, report)
    assert [step["delay_days"] for step in steps] == [2, 7, 21], steps
    assert wait_until(lambda: form_offers_followups(cluster), timeout=30, interval=0.5), (
        "the article's form does not name the follow-ups after the sequence was turned on"
    )
    time.sleep(PAGE_GENERATION_RECHECK)  # every web process has seen the new page by now
    signups = people("followups", FOLLOWUP_READERS)
    emails = {email for _name, email in signups}
    run = cluster.sign_up(signups)
    assert not run.errors, run.errors[:5]
    assert run.statuses == {303: len(signups)}, dict(run.statuses)
    assert set(run.per_host) == {"web1", "web2"}, run.per_host
    statuses = cluster.wait_settled(emails, timeout=SETTLE_TIMEOUT)
    assert statuses == {"sent": len(emails)}, f"{dict(statuses)}\n{cluster.diagnostics()}"
    consents = cluster.query(
        "SELECT followups_consented, consent_version LIKE '%%+followups' AS named, count(*) AS n "
        "FROM backpain_report_subscriber WHERE email_canonical = ANY(%s) GROUP BY 1, 2",
        (sorted(emails),),
    )
    assert consents == [{"followups_consented": True, "named": True, "n": len(emails)}], consents
    reports_done = time.monotonic()

    runs_before = cluster.sweep_runs()
    moved = 0
    for index, step in enumerate(steps):
        days_pass(cluster, emails, report, step["delay_days"] + 1 - moved)  # due since a day
        moved = step["delay_days"] + 1
        done = wait_until(
            lambda step=step: followups_sent(cluster, emails)[(step["id"], "sent")] == len(emails),
            timeout=FOLLOWUP_WAIT,
            interval=0.5,
        )
        rows = followups_sent(cluster, emails)
        assert done, f"day {step['delay_days']}: {dict(rows)}\n{cluster.diagnostics()}"
        later = {later["id"] for later in steps[index + 1 :]}
        early = {key: n for key, n in rows.items() if key[0] in later}
        assert not early, f"a step went before its day (day {moved} now): {early}"
    runs_after = cluster.sweep_runs()
    wait_mail_quiet(cluster)

    made = cluster.followups_made()
    subjects = {step["subject"]: step for step in steps}
    per_reader = Counter(
        (email, message["subject"])
        for message in cluster.sink.messages()
        for email in message["rcpt"]
        if email in emails and message["subject"] in subjects
    )
    result = {
        "readers": len(emails),
        "steps": len(steps),
        "expected": len(emails) * len(steps),
        "sent": sum(per_reader.values()),
        "lost": sum(1 for e in emails for s in subjects if per_reader[(e, s)] == 0),
        "doubled": sum(n - 1 for n in per_reader.values() if n > 1),
    }
    print("MULTIHOST-RESULT followups " + " ".join(f"{k}={v}" for k, v in result.items()))
    for step in steps:
        makers = dict(made.get(step["id"], {}))
        print(f"day {step['delay_days']} (step {step['id']}): rows made by {makers}")
    print(
        f"sweeps during the steps: {runs_before} -> {runs_after}; scheduler log: "
        f"{scheduler_lines(cluster)}; sign-ups and reports {reports_done - started:.1f} s, "
        f"follow-ups {time.monotonic() - reports_done:.1f} s"
    )

    assert result["lost"] == result["doubled"] == 0, result
    assert all(n == 1 for n in per_reader.values()), per_reader.most_common(3)
    rows = followups_sent(cluster, emails)
    assert rows == Counter({(step["id"], "sent"): len(emails) for step in steps}), rows
    assert {step["id"]: sum(made.get(step["id"], {}).values()) for step in steps} == {
        step["id"]: len(emails) for step in steps
    }, made
    assert all(runs_after[k] > runs_before[k] for k in runs_after), (
        f"a sweeper did not run while the steps fell due: {runs_before} {runs_after}"
    )
    assert run.server_errors == 0 and cluster.web_server_errors() == 0, "a web host logged a 5xx"


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _doubled(messages: list[dict], emails: set[str]) -> dict[str, list[dict]]:
    per_address: dict[str, list[dict]] = {}
    for message in messages:
        for email in message["rcpt"]:
            if email in emails:
                per_address.setdefault(email, []).append(message)
    return {email: copies for email, copies in per_address.items() if len(copies) > 1}


# Clean-up: the hosts go however the run ends ------------------------------------------------

_CLEANUP_CHILD = """
import json, signal, subprocess, sys, time
from pathlib import Path
from tests.realservices.support.multihost import Cluster, cleaned_up
from tests.realservices.support.processes import Process, log_contains

mode, work = sys.argv[1], Path(sys.argv[2])
cluster = Cluster(work, work / "logs")
found = {}
try:
    with cleaned_up(cluster) as found:
        cluster.lan.create()
        host = cluster.lan.add("db", 2)
        # Outside every process group the cluster stops: only the namespace finds it.
        stray = subprocess.Popen(host.wrap(["sleep", "600"]), start_new_session=True)
        if mode == "alarm":  # a stop that takes a while, and a test timeout firing during it
            stubborn = cluster.webs["web1"] = Process(
                "stubborn", host.wrap(["sh", "-c", "trap '' TERM; echo deaf; sleep 600"]),
                env={}, cwd=work, log=work / "stubborn.log",
            )
            stubborn.wait_ready(lambda: log_contains(stubborn.log, "deaf"), timeout=30, what="deaf")
            def timed_out(*_):
                raise TimeoutError("pytest-timeout")
            signal.signal(signal.SIGALRM, timed_out)
            signal.setitimer(signal.ITIMER_REAL, 2)
        print("ready", cluster.lan.prefix, stray.pid, flush=True)
        if mode in ("error", "alarm"):
            raise RuntimeError("initdb failed")  # a start that fails half-way
        time.sleep(600)
finally:
    print("stragglers", json.dumps(found), flush=True)
"""


@pytest.mark.parametrize("ending", ["sigterm", "error", "alarm"])
def test_hosts_removed_however_the_run_ends(ending, tmp_path):
    """SIGTERM (a CI job's timeout), an exception in a half-done start, and a test timeout
    (SIGALRM) firing while the hosts are being stopped: every namespace goes, and a process
    that escaped its process group is found inside its host, killed and reported."""
    problem = netns.problem()
    if problem:
        unavailable(f"multi-host tier: {problem}")
    child = subprocess.Popen(
        [sys.executable, "-c", _CLEANUP_CHILD, ending, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = child.stdout.readline().split()
        assert ready[:1] == ["ready"], (ready, child.stderr.read() if child.poll() else "")
        prefix, stray = ready[1], int(ready[2])
        if ending == "sigterm":
            child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert netns.leftovers(prefix) == [], err
    assert wait_until(lambda: not Path(f"/proc/{stray}").exists(), timeout=10), "stray alive"
    found = json.loads(out.split("stragglers", 1)[1])
    assert any("sleep 600" in p for p in found.get(f"{prefix}db", [])), (found, err)
    expected = {"sigterm": "KeyboardInterrupt", "error": "initdb failed", "alarm": "pytest-timeout"}
    assert expected[ending] in err, err
    assert child.returncode != 0
