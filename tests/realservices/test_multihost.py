"""The example site on five hosts (network namespaces): one worker host cut off mid-batch, the
broker restarted mid-batch; every reader gets their report once.

The hosts (:mod:`.support.multihost`): **db** (a private PostgreSQL, a private Redis as broker
and cache, an SMTP sink), **web1** and **web2** (gunicorn), **w1** (a Celery worker and celery
beat, which schedules the sweep task) and **w2** (a Celery worker and a loop of
``manage.py backpain_sweep``), and a **client** that posts the sign-ups. Delivery timings are
short (``CLAIM_LEASE`` 10 s, ``SWEEP_GRACE`` 60 s, the default, the sweep every 2 s on both hosts).

Each scenario posts 1,000 sign-ups of new addresses plus 50 of 10 addresses (5 each), spread
over both web hosts, and prints a ``MULTIHOST-RESULT`` line: sign-ups, reports expected,
delivered, lost, doubled. What holds, said precisely (README, "How delivery works"):

- nothing is lost, and no address ever gets two *different* reports;
- an email is sent twice only in the one window no outbox closes: the mail server accepted it
  and the sending host lost the database before recording it. A cut can land there for the
  messages w1 was handing over at that instant (at most its 2 pool processes); such a copy has
  the same Message-ID as the first. The test counts them, checks each is such a message, and
  expects none otherwise (the broker restart loses no claim, so there it must be 0).
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
from pathlib import Path

import pytest

from .support import netns
from .support.gating import require_service, unavailable
from .support.multihost import CLAIM_LEASE, Cluster, SignupRun, cleaned_up, people
from .support.processes import wait_until
from .support.stack import ROOT

pytestmark = [pytest.mark.services, pytest.mark.multihost, pytest.mark.timeout(900)]

UNIQUE = int(os.environ.get("BACKPAIN_MULTIHOST_N") or 1000)  # new addresses per scenario
REPEATED_ADDRESSES = 10
REPEATS_EACH = 5
SETTLE_TIMEOUT = 420.0
LATE_COPIES_WAIT = 8.0  # after settling: time for a copy still on its way to arrive
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

    A claim still held 4 s after the cut is w1's: w2 sends a report in well under a second.
    If w1 happened to hold none, its link comes back and the cut is tried again.
    """
    for _attempt in range(5):
        before = cluster.claims()
        cut_at = time.time()
        cluster.lan.cut("w1")
        time.sleep(4)
        now = cluster.claims()
        held = {
            pk: row
            for pk, row in before.items()
            if pk in now and now[pk]["claimed_at"] == row["claimed_at"]
        }
        if held:
            return cut_at, held
        cluster.lan.restore("w1")
        time.sleep(3)
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
    time.sleep(LATE_COPIES_WAIT)
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
    # w2 took over every claim w1 held, after the lease and before w1 came back.
    sent_by_w2 = cluster.sent_by("w2")
    for pk, before in held.items():
        row = taken_over[pk]
        assert row["status"] == "sent", f"delivery {pk} not sent while w1 was cut off: {row}"
        assert row["attempts"] >= before["attempts"] + 1, (before, row)
        assert row["sent_at"] >= before["claimed_at"] + _seconds(CLAIM_LEASE), (before, row)
        assert row["sent_at"].timestamp() < restored_at, (row, restored_at)
        assert pk in sent_by_w2, f"delivery {pk} was not sent by w2"
    # Both sweepers worked, side by side.
    sweeps = cluster.sweeps()
    assert all(sweeps.values()), f"a sweeper re-published nothing: {sweeps}"
    # Duplicates: only a message w1 was handing over when its link went, with one Message-ID.
    messages = cluster.sink.messages()
    doubled = _doubled(messages, emails)
    assert len(doubled) <= W1_POOL, doubled
    held_emails = {row["email"] for row in cluster.delivery_rows(held).values()}
    for email, copies in doubled.items():
        assert email in held_emails, f"{email} got two copies but w1 was not sending it: {copies}"
        assert len({m["message_id"] for m in copies}) == 1, copies
        assert copies[0]["time"] <= cut_at + 1, copies


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
    cluster.redis.stop()
    time.sleep(3)
    cluster.redis.start()
    run = background.join()
    statuses = cluster.wait_settled(emails, timeout=SETTLE_TIMEOUT)
    time.sleep(LATE_COPIES_WAIT)
    result = outcome(cluster, "broker", len(signups), emails)
    after = cluster.sweeps()
    print(
        f"sweeps re-published {after} (before the scenario: {before}); answers {dict(run.statuses)}"
    )

    assert_web_clean(cluster, run, len(signups))
    assert statuses == {"sent": len(emails)}, f"{dict(statuses)}\n{cluster.diagnostics()}"
    assert result["lost"] == result["doubled"] == result["strays"] == 0, cluster.diagnostics()
    assert sum(after.values()) > sum(before.values()), "the sweeps re-published nothing"


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
