"""``make bench``: every row of issue 11 as a ratio to its baseline, in one run on the real stack.

    .venv/bin/python benchmarks/run.py [--quick | --full] [--seconds 10] [--connections 16] ...

Starts PostgreSQL (a database of its own), Redis, an SMTP sink, gunicorn for the example site
and for the bare baseline site (2 sync workers each), and later the example's prefork Celery
worker; measures; stops everything (also on failure or Ctrl-C); writes ``benchmarks/RESULTS.md``.
The rows, in the order they run:

1. web (worker stopped): the article page GET against a bare constant page (and, for
   information, against a bare page with a plain form and a CSRF token); the sign-up POST
   against a bare view that validates, INSERTs one row and calls ``.delay()``. wrk, fixed
   duration and connections, baseline and ours alternating over ``--rounds``.
2. PDF: ``manage.py backpain_bench``, the cached path against a full WeasyPrint render.
3. worker: ``--reports`` sign-ups end to end (HTTP POST to the SMTP sink's 250) per worker
   process, against building and sending the same email with a pre-built PDF; and the worker's
   RSS after those reports against its RSS at rest after the first ones.
4. webhook: ``benchmarks/webhook_bench.py`` in one process: ``--webhook-events`` queued
   events sent with ``webhooks_send`` in batches (one claim, sign, SSRF-guarded POST, the
   delivered recorded together; one by one with ``webhook_send`` reported beside) to a loopback
   receiver, against as many bare signed POSTs of the same body to the same receiver.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402 - after the path fix, when run as a script
    Goal,
    Row,
    WrkResult,
    figure,
    parse_backpain_bench,
    results_markdown,
    sections_carry,
)
from benchmarks.load import (  # noqa: E402
    WrkOptions,
    form_session,
    post_signups,
    run_wrk,
    signup_script_args,
)
from benchmarks.stack import DEFAULT_POSTGRES, BenchStack, RssSampler  # noqa: E402
from tests.realservices.support.stack import manage, site_run  # noqa: E402
from tests.realservices.support.webhook_receiver_client import Receiver  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MULTIHOST_SECTION = "multihost"  # written by benchmarks/multihost.py
ARTEFACTS = ROOT / "test-artefacts" / "bench"
ROWS = ("article", "signup", "pdf", "worker", "webhook")
# Not a row: py-spy flame graphs of gunicorn under wrk (run with --rows flamegraphs).
PHASES = (*ROWS, "flamegraphs")
WEB_LOAD_ROWS = {"article", "signup", "flamegraphs"}  # they need wrk (and Varnish)
PROFILES = ROOT / "benchmarks" / "profiles"

# Per mode: wrk seconds per measurement, rounds, warm-up seconds, reports, PDF renders,
# webhook events per side and round.
MODES = {
    "quick": {"seconds": 5.0, "rounds": 1, "warmup": 2.0, "reports": 100, "renders": 5,
              "webhook_events": 100},
    "standard": {"seconds": 10.0, "rounds": 3, "warmup": 3.0, "reports": 500, "renders": 20,
                 "webhook_events": 500},
    "full": {"seconds": 10.0, "rounds": 3, "warmup": 3.0, "reports": 5000, "renders": 20,
             "webhook_events": 2000},
}  # fmt: skip

SITE_PENDING = "backpain_report_pendingsignup"
BASELINE_TABLE = "baseline_signup"


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="5 s per measurement, 1 round, 100 reports, 5 renders")  # fmt: skip
    mode.add_argument("--full", action="store_const", const="full", dest="mode",
                      help="10 s per measurement, 3 rounds, 5,000 reports, 20 renders")  # fmt: skip
    parser.set_defaults(mode="standard")
    parser.add_argument("--seconds", type=float, help="wrk duration per measurement")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rounds", type=int, help="baseline/ours pairs per web row")
    parser.add_argument("--warmup", type=float, help="unmeasured wrk seconds per target first")
    parser.add_argument("--reports", type=int, help="end-to-end reports (and for the RSS row)")
    parser.add_argument("--renders", type=int, help="backpain_bench renders per path")
    parser.add_argument("--webhook-events", type=int, help="webhook row: events per side and round")
    parser.add_argument(
        "--webhook-profile",
        type=Path,
        help="webhook row: also profile one more batch of ours (not counted) with cProfile, its "
        "stats to this file and the top of them to test-artefacts/bench/webhook_profile.txt",
    )
    parser.add_argument("--worker-processes", type=int, default=2, help="prefork pool size (2)")
    parser.add_argument(
        "--max-tasks-per-child",
        type=int,
        default=0,
        help="0 (default): pool processes live for the whole run, so the RSS row sees one "
        "long-lived process; the example site recycles them after 100 tasks",
    )
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"which rows ({','.join(ROWS)}; or flamegraphs)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BACKPAIN_BENCH_POSTGRES_URL")
        or os.environ.get("BACKPAIN_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES,
        help="server on which a database of our own is created and dropped",
    )
    parser.add_argument(
        "--private-postgres", action="store_true", help="an initdb cluster of our own instead"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where RESULTS.md goes")
    parser.add_argument("--label", default="", help="what this run measures, e.g. 'before'")
    args = parser.parse_args(argv)
    for key, value in MODES[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = set(args.rows) - set(PHASES)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    if (
        args.seconds <= 0
        or args.rounds < 1
        or args.reports < 1
        or args.renders < 1
        or args.webhook_events < 1
    ):
        parser.error(
            "--seconds, --rounds, --reports, --renders and --webhook-events must be positive"
        )
    return args


def make_rows() -> dict[str, Row]:
    return {
        "article": Row(
            "article",
            "article page from the app, its page cache warm, no CDN (GET, anonymous)",
            "bare view returning a constant HTML page",
            "req/s",
            Goal(">=", 0.8),
        ),
        "article_varnish": Row(
            "article_varnish",
            "article page through a stock Varnish (for information)",
            "the constant page through the same Varnish",
            "req/s",
            None,
        ),
        "signup": Row(
            "signup",
            "sign-up POST (valid, new address each time, to the 303)",
            "bare view: validate a form, INSERT one row, `.delay()`",
            "req/s",
            Goal(">=", 0.8),
        ),
        "pdf": Row(
            "pdf",
            "per-report PDF (cached path), median time per report",
            "full WeasyPrint render of the same report",
            "s",
            Goal("<=", 0.10),
        ),
        "e2e": Row(
            "e2e",
            "end-to-end reports per second per worker process (sign-up to SMTP 250)",
            "building and sending the same email with a pre-built PDF over SMTP",
            "/s",
            Goal(">=", 0.25),
        ),
        "rss": Row(
            "rss",
            "worker RSS after the reports (main + pool processes)",
            "at rest after the first reports",
            "MiB",
            Goal("<=", 1.10),
        ),
        "webhook": Row(
            "webhook",
            "webhook events per second per worker process draining a backlog (`webhooks_send` "
            "in batches of one endpoint's events: one claim, then sign and SSRF-guarded POST "
            "each, the delivered recorded together)",
            "bare POSTs of the same body, signed with standardwebhooks, a new connection each, "
            "to the same receiver",
            "/s",
            Goal(">=", 0.5),
        ),
    }


# --- The web rows ---------------------------------------------------------------------------


def _check_wrk(row: Row, side: str, result: WrkResult) -> None:
    if result.errors:
        row.notes.append(
            f"{side}: {result.bad_status} non-2xx/3xx responses, socket errors "
            f"{result.socket_errors} in {result.requests} requests"
        )
        if result.bad_status or result.errors > 0.01 * max(result.requests, 1):
            row.valid = False


def _latency(result: WrkResult) -> str:
    return ", ".join(f"p{k.rstrip('%')} {v * 1000:.1f} ms" for k, v in result.latency.items())


def _measure_pair(row: Row, targets: dict[str, str], args, wrk: WrkOptions) -> None:
    """GET the baseline's URL and ours, alternating for ``args.rounds`` rounds after a warm-up;
    ``targets`` maps "baseline" and "ours" to their URLs."""
    warm = WrkOptions(args.warmup, wrk.connections, wrk.threads)
    for url in targets.values():
        run_wrk(url, warm)
    for round_no in range(args.rounds):
        order = list(targets.items())
        if round_no % 2:
            order.reverse()
        for name, url in order:
            result = run_wrk(url, wrk)
            say(f"GET {row.key} {name}: {result.rate:,.0f} req/s ({_latency(result)})")
            (row.ours if name == "ours" else row.baseline).append(result.rate)
            _check_wrk(row, name, result)
            if round_no == 0:
                row.notes.append(f"latency {name}: {_latency(result)}")


def measure_article(stack: BenchStack, rows: dict[str, Row], args, wrk: WrkOptions) -> None:
    """The article page from the app (its page cache warmed by the warm-up) against the
    constant page; then both through a stock Varnish each (built-in VCL)."""
    _measure_pair(
        rows["article"],
        {"baseline": stack.baseline_url + "/", "ours": stack.site_url + "/"},
        args,
        wrk,
    )
    site_varnish, baseline_varnish = stack.start_varnish()
    row = rows["article_varnish"]
    _measure_pair(
        row,
        {"baseline": baseline_varnish.base_url + "/", "ours": site_varnish.base_url + "/"},
        args,
        wrk,
    )
    for name, varnish in (("ours", site_varnish), ("baseline", baseline_varnish)):
        counters = varnish.stats()
        row.notes.append(
            f"{name} through Varnish: {counters.get('MAIN.cache_hit', 0):,} hits, "
            f"{counters.get('MAIN.backend_req', 0):,} backend requests"
        )


def measure_signup(stack: BenchStack, rows: dict[str, Row], args, wrk: WrkOptions) -> None:
    row = rows["signup"]
    run_id = secrets.token_hex(3)
    ours_session = form_session(stack.site_url, "/", csrf=False)
    baseline_session = form_session(stack.baseline_url, "/form/", csrf=True)
    sides = {
        "baseline": (
            stack.baseline_url + "/form/",
            signup_script_args(baseline_session, "/form/", f"b{run_id}", ours=False),
            BASELINE_TABLE,
        ),
        "ours": (
            stack.site_url + "/signup/",
            signup_script_args(ours_session, "/signup/", f"o{run_id}", ours=True),
            SITE_PENDING,
        ),
    }
    warm = WrkOptions(args.warmup, wrk.connections, wrk.threads)
    for name, (url, script_args, _table) in sides.items():
        script_args = [*script_args[:3], f"w{name[0]}{run_id}", script_args[4]]
        run_wrk(url, warm, script_args=script_args)
    try:
        for round_no in range(args.rounds):
            order = list(sides.items())
            if round_no % 2:
                order.reverse()
            for name, (url, script_args, table) in order:
                script_args = [*script_args[:3], f"{script_args[3]}r{round_no}", script_args[4]]
                before = stack.settled_count(table)
                result = run_wrk(url, wrk, script_args=script_args)
                inserted = stack.settled_count(table) - before
                say(f"POST {name}: {result.rate:,.0f} req/s, {inserted} rows ({_latency(result)})")
                (row.ours if name == "ours" else row.baseline).append(result.rate)
                _check_wrk(row, name, result)
                if inserted > result.requests + wrk.connections:
                    row.valid = False
                    row.notes.append(
                        f"{name}: {inserted} rows for {result.requests} requests: more than the "
                        f"{wrk.connections} requests still in flight when wrk stopped"
                    )
                if inserted < 0.99 * result.requests:
                    row.valid = False
                    row.notes.append(
                        f"{name}: {result.requests} requests but {inserted} rows: "
                        "some POSTs were not accepted sign-ups"
                    )
                if round_no == 0:
                    row.notes.append(
                        f"{name}: {inserted} rows for {result.requests} requests; "
                        f"{_latency(result)}"
                    )
    finally:
        # Thousands of messages nobody will process: gone before the worker starts (once the
        # requests still queued in gunicorn's backlog are answered).
        stack.settled_count(SITE_PENDING)
        stack.settled_count(BASELINE_TABLE)
        stack.purge_queues()
        stack.delete_rows(SITE_PENDING)
        stack.delete_rows(BASELINE_TABLE)


def record_flamegraphs(stack: BenchStack, args, wrk: WrkOptions) -> None:
    """py-spy flame graphs (SVG) of both gunicorns under wrk, apart from any measurement."""
    run_id = secrets.token_hex(3)
    ours_session = form_session(stack.site_url, "/", csrf=False)
    baseline_session = form_session(stack.baseline_url, "/form/", csrf=True)
    targets = [
        ("gunicorn_article_get", stack.site, stack.site_url + "/", None),
        ("gunicorn_baseline_constant_get", stack.baseline, stack.baseline_url + "/", None),
        (
            "gunicorn_signup_post",
            stack.site,
            stack.site_url + "/signup/",
            signup_script_args(ours_session, "/signup/", f"fo{run_id}", ours=True),
        ),
        (
            "gunicorn_baseline_signup_post",
            stack.baseline,
            stack.baseline_url + "/form/",
            signup_script_args(baseline_session, "/form/", f"fb{run_id}", ours=False),
        ),
    ]
    spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
        "py-spy"
    )
    if not spy_bin:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    PROFILES.mkdir(parents=True, exist_ok=True)
    for name, server, url, script_args in targets:
        assert server is not None
        svg = PROFILES / f"{name}.svg"
        spy = subprocess.Popen(
            [spy_bin, "record", "--pid", str(server.popen.pid),
             "--subprocesses", "--nonblocking", "--rate", "250", "--format", "flamegraph",
             "--duration", f"{int(wrk.seconds) + 1}", "--output", str(svg)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        err = ""
        try:
            time.sleep(1)
            run_wrk(url, wrk, script_args=script_args)
            _out, err = spy.communicate(timeout=60)
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        say(f"flame graph {svg.name}: {'written' if svg.exists() else 'missing: ' + err[-300:]}")
    stack.settled_count(SITE_PENDING)
    stack.settled_count(BASELINE_TABLE)
    stack.purge_queues()
    stack.delete_rows(SITE_PENDING)
    stack.delete_rows(BASELINE_TABLE)


# --- The PDF row ------------------------------------------------------------------------------


def measure_pdf(stack: BenchStack, rows: dict[str, Row], args) -> None:
    out = manage(
        stack.site_env(),
        "backpain_bench",
        "--renders",
        str(args.renders),
        "--traced-renders",
        "0",
        timeout=60 + args.renders * 30,
    )
    (ARTEFACTS / "backpain_bench.txt").write_text(out)
    times = parse_backpain_bench(out)
    row = rows["pdf"]
    row.ours.append(times["cached path"])
    row.baseline.append(times["full render"])
    first = re.search(r"first report of an edition.*", out)
    if first:
        row.notes.append(first.group(0))
    row.notes.append(f"`backpain_bench --renders {args.renders}`; medians per report")
    say(f"PDF: cached {times['cached path']:.4f} s, full {times['full render']:.4f} s")


# --- The worker rows -------------------------------------------------------------------------


def _mib(kib: int) -> float:
    return kib / 1024.0


def measure_worker(stack: BenchStack, rows: dict[str, Row], args) -> list[str]:
    """The end-to-end and RSS rows; returns details for RESULTS.md."""
    e2e, rss = rows["e2e"], rows["rss"]
    details: list[str] = []
    run_id = secrets.token_hex(3)
    processes = args.worker_processes
    stack.start_worker(processes=processes, max_tasks_per_child=args.max_tasks_per_child)
    say(f"worker ready ({processes} processes)")
    try:
        warm_prefix = f"warm-{run_id}"
        warm = [f"{warm_prefix}-{i}@example.com" for i in range(2 * processes)]
        accepted, problems = post_signups(stack.site_url, "/signup/", warm, clients=2)
        if accepted != len(warm):
            raise RuntimeError(f"warm-up sign-ups refused: {problems}")
        if not stack.sink.wait_count(warm_prefix, len(warm), timeout=180):
            raise RuntimeError(f"warm-up reports did not arrive:\n{stack.worker.describe(60)}")
        sample = stack.sink.messages[0].raw
        message_file = stack.work_dir / "report.eml"
        message_file.write_bytes(sample)
        time.sleep(2)
        at_rest = stack.worker_rss_kib()
        say(f"worker RSS at rest: {_mib(at_rest['total']):.1f} MiB")

        prefix = f"e2e-{run_id}"
        emails = [f"{prefix}-{i}@example.com" for i in range(args.reports)]
        with RssSampler(stack) as sampler:
            started = time.monotonic()
            accepted, problems = post_signups(stack.site_url, "/signup/", emails, clients=4)
            posted = time.monotonic() - started
            say(f"{accepted} sign-ups posted in {posted:.1f} s; waiting for the reports")
            arrived = stack.sink.wait_count(prefix, accepted, timeout=120 + 3 * args.reports)
        last = stack.sink.last_arrival(prefix)
        count = stack.sink.count(prefix)
        time.sleep(2)
        at_end = stack.worker_rss_kib()
    finally:
        stack.stop_worker()
    statuses = stack.database.query(
        "SELECT status, count(*) AS n FROM backpain_report_delivery GROUP BY status ORDER BY 1"
    )
    details.append(
        "deliveries by status after the worker rows: "
        + ", ".join(f"{r['status']} {r['n']}" for r in statuses)
    )
    if problems:
        e2e.notes.append(f"sign-ups refused: {problems}")
    if not arrived or last is None:
        e2e.valid = rss.valid = False
        e2e.notes.append(f"only {count} of {accepted} reports arrived in time")
    elapsed = (last or time.monotonic()) - started
    per_process = count / elapsed / processes
    e2e.ours.append(per_process)
    e2e.notes.append(
        f"{count} reports in {elapsed:.1f} s from the first POST to the last SMTP 250 "
        f"({count / elapsed:.2f}/s over {processes} worker processes; the POSTs took "
        f"{posted:.1f} s of it)"
    )
    say(f"end to end: {per_process:.2f} reports/s per process")

    rss.baseline.append(_mib(at_rest["total"]))
    rss.ours.append(_mib(at_end["total"]))
    rss.notes.append(
        f"at rest after {len(warm)} reports: "
        + ", ".join(f"{k} {_mib(v):.1f}" for k, v in at_rest.items())
        + " MiB"
    )
    rss.notes.append(
        f"after {count} more: "
        + ", ".join(f"{k} {_mib(v):.1f}" for k, v in at_end.items())
        + f" MiB; peak total while sending {_mib(sampler.peak):.1f} MiB"
    )
    rss.notes.append(
        f"--max-tasks-per-child {args.max_tasks_per_child}"
        + (" (pool processes never recycled)" if args.max_tasks_per_child == 0 else "")
    )

    out = site_run(
        stack.baseline_env(), "-m", "benchmarks.mail_baseline", str(message_file),
        "--processes", str(processes), "--seconds", str(args.seconds),
        timeout=args.seconds + 180,
    )  # fmt: skip
    baseline = json.loads(out.strip().splitlines()[-1])
    e2e.baseline.append(baseline["per_process"])
    e2e.notes.append(
        f"baseline: {baseline['sent']} emails ({baseline['pdf_bytes'] / 1024:.0f} KiB PDF each) "
        f"from {processes} processes in {args.seconds:g} s, a new SMTP connection each"
    )
    say(f"mail baseline: {baseline['per_process']:.2f} emails/s per process")
    return details


# --- The webhook row ---------------------------------------------------------------------------


def measure_webhook(stack: BenchStack, rows: dict[str, Row], args) -> None:
    """``benchmarks/webhook_bench.py`` in one process of the example site (``DEBUG`` on, which
    the app requires of an ``http://`` receiver; loopback allowed) against the tests' webhook
    receiver, which verifies every signature; every request must have been accepted."""
    row = rows["webhook"]
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    env = stack.site_env()
    env["DJANGO_DEBUG"] = "1"
    env["BACKPAIN_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    with Receiver(secret, directory=stack.work_dir) as receiver:
        out = site_run(
            env, "-m", "benchmarks.webhook_bench", "--url", receiver.url, "--secret", secret,
            "--events", str(args.webhook_events), "--rounds", str(args.rounds),
            *(["--profile", str(args.webhook_profile)] if args.webhook_profile else []),
            timeout=300 + 3 * (args.rounds + 1) * args.webhook_events,
        )  # fmt: skip
        result = json.loads(out.strip().splitlines()[-1])
        records = receiver.records()
    if args.webhook_profile:
        (ARTEFACTS / "webhook_profile.txt").write_text(out)
    row.ours += result["ours"]
    row.baseline += result["baseline"]
    accepted = sum(1 for r in records if r["verified"] and 200 <= r["status"] < 300)
    if accepted != result["expected_requests"] or len(records) != accepted:
        row.valid = False
        row.notes.append(
            f"the receiver accepted {accepted} of {len(records)} requests; "
            f"{result['expected_requests']} were sent"
        )
    row.notes.append(
        f"{args.webhook_events} events per side and round, {args.rounds} round(s) alternating, "
        f"in one process; a {result['body_bytes']}-byte `subscriber.created` body; "
        f"{result['queries_per_event']} SQL queries per event sent alone; the receiver "
        f"verified and accepted all {accepted} requests"
    )
    single = sorted(result["ours_single"])[len(result["ours_single"]) // 2]
    baseline = sorted(result["baseline"])[len(result["baseline"]) // 2]
    row.notes.append(
        f"a fresh event's own message (`webhook_send`: a claim and a record each) ran at "
        f"{single:.0f} /s, {single / baseline:.2f}x of the baseline (median)"
    )
    row.notes.append(
        "the receiver is the tests' (`tests/realservices/support/webhook_receiver.py`, verifies "
        "each signature) on http://127.0.0.1, which the app allows only with DEBUG on: this "
        "row runs the example site's settings with DJANGO_DEBUG=1 (so Django also records "
        "each query) and BACKPAIN_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8"
    )
    say(
        "webhooks: ours "
        + ", ".join(f"{v:.0f}" for v in result["ours"])
        + " /s; one by one "
        + ", ".join(f"{v:.0f}" for v in result["ours_single"])
        + " /s; bare "
        + ", ".join(f"{v:.0f}" for v in result["baseline"])
        + " /s"
    )


# --- Machine and versions ---------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def machine_info(load_start: tuple[float, ...]) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 1048576:.1f} GiB"
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory or "unknown",
        "system": f"{platform.system()} {platform.release()}",
        "load average (1, 5, 15 min) at start": ", ".join(f"{v:.2f}" for v in load_start),
        "load average at end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def versions(stack: BenchStack) -> dict[str, str]:
    postgres = "unknown"
    with contextlib.suppress(Exception):
        postgres = stack.server_version()
    redis = _command_output(["redis-server", "--version"])
    match = re.search(r"v=(\S+)", redis)
    return {
        "Python": platform.python_version(),
        "Django": _version("Django"),
        "gunicorn": _version("gunicorn"),
        "Celery": _version("celery"),
        "kombu": _version("kombu"),
        "redis-py": _version("redis"),
        "psycopg": _version("psycopg"),
        "WeasyPrint": _version("weasyprint"),
        "django-crispy-forms": _version("django-crispy-forms"),
        "PostgreSQL": postgres + (" (private initdb cluster)" if stack.private_postgres else ""),
        "Redis": match.group(1) if match else redis,
        "wrk": _command_output(["wrk", "-v"]).split(" Copyright")[0],
    }


def git_revision() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    measured = git("log", "-1", "--format=%h", "--", "backpain_report", "example_project")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "backpain_report")
    return f"{revision}; backpain_report/ and example_project/ as of {measured or 'unknown'}" + (
        ", with uncommitted changes in backpain_report/" if dirty else ""
    )


# --- Main ---------------------------------------------------------------------------------------


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    problems = BenchStack.problems(web_load=bool(WEB_LOAD_ROWS & set(args.rows)))
    if problems:
        for problem in problems:
            print(f"make bench: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = make_rows()
    wrk = WrkOptions(args.seconds, args.connections, args.threads)
    failures: list[str] = []
    details: list[str] = []
    stack = BenchStack(
        log_dir=ARTEFACTS, postgres_url=args.postgres_url, private_postgres=args.private_postgres,
        say=say,
    )  # fmt: skip
    phases = [
        ("article", lambda: measure_article(stack, rows, args, wrk)),
        ("signup", lambda: measure_signup(stack, rows, args, wrk)),
        ("pdf", lambda: measure_pdf(stack, rows, args)),
        ("worker", lambda: details.extend(measure_worker(stack, rows, args))),
        ("webhook", lambda: measure_webhook(stack, rows, args)),
        ("flamegraphs", lambda: record_flamegraphs(stack, args, wrk)),
    ]
    version_list: dict[str, str] = {}
    try:
        stack.start_services()
        stack.start_web()
        say(f"site {stack.site_url}, baseline {stack.baseline_url}")
        for name, phase in phases:
            if name not in args.rows:
                continue
            say(f"--- {name}")
            try:
                phase()
            except Exception as exc:  # noqa: BLE001 - one row failing must not hide the others
                traceback.print_exc()
                failures.append(f"{name}: {type(exc).__name__}: {exc}"[:2000])
        version_list = versions(stack)
    finally:
        stack.close()
        say("stack stopped, database dropped")
    settings = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "label": args.label or "(none)",
        "code": f"git {git_revision()}",
        "mode": f"{args.mode} (`BENCH_ARGS={shlex.quote(shlex.join(argv))}`)"
        if argv
        else args.mode,
        "web": "gunicorn, 2 sync workers per site; the Celery worker stopped",
        "load": f"wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s per measurement, "
        f"{args.rounds} round(s) of baseline and ours alternating (median shown), "
        f"{args.warmup:g} s warm-up per target",
        "worker": f"prefork, {args.worker_processes} processes, {args.reports} reports end to end",
        "webhooks": f"{args.webhook_events} events per side and round, one process",
        "PDF": f"backpain_bench --renders {args.renders}",
        "database": "a PostgreSQL database of its own (created, then dropped)",
        "broker and cache": "a private redis-server (both sites)",
    }  # fmt: skip
    notes = [
        "Other developers share this machine's 2 cores: absolute rates are noisy; the ratios, "
        "each from the same run, are the figures to compare. The load averages above show how "
        "busy the machine was.",
        *(f"FAILED {failure}" for failure in failures),
    ]
    chosen = [
        row
        for key, row in rows.items()
        if (key.startswith("article") and "article" in args.rows)
        or (key in ("e2e", "rss") and "worker" in args.rows)
        or key in args.rows
    ]
    if not chosen:
        return 1 if failures else 0
    text = results_markdown(
        chosen,
        machine=machine_info(load_start),
        versions=version_list,
        settings=settings,
        notes=notes,
        details=details,
    )
    if args.output.exists():  # benchmarks/multihost.py's section stays
        text = sections_carry(args.output.read_text(), text, [MULTIHOST_SECTION])
    args.output.write_text(text)
    (ARTEFACTS / "results.json").write_text(json.dumps([row.as_dict() for row in chosen], indent=2))
    say(f"wrote {args.output}")
    for row in chosen:
        say(
            f"{row.key}: ours {figure(row.ours_figure, row.unit)}, baseline "
            f"{figure(row.baseline_figure, row.unit)}"
        )
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
