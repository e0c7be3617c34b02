"""The benchmark suite's pure parts (``benchmarks/harness.py`` and friends), not the load itself."""

from __future__ import annotations

import importlib
import math

import pytest
from django.core.mail import EmailMultiAlternatives

from benchmarks import harness
from benchmarks.harness import Goal, Row, parse_backpain_bench, parse_wrk, results_markdown

# wrk 4.1's output for a run with --latency, a bad status and socket errors.
WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:18999/signup/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.08ms  819.99us   9.14ms   91.80%
    Req/Sec     1.95k   254.34     2.54k    80.00%
  Latency Distribution
     50%    0.93ms
     75%    1.22ms
     90%    1.66ms
     99%    1.20s
  19390 requests in 10.00s, 0.96MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   1938.94
Transfer/sec:      0.96MB
"""

BENCH_OUTPUT = """\
backpain_bench: 5 renders per path, report of 178 KiB
machine: 2 CPUs, Intel(R) Xeon(R) Processor, Python 3.13.0
first report of an edition (body rendered and stored): 1.234 s
path           median s    p90 s  py peak MiB  RSS rise MiB  time x  py mem x
full render      0.8613   0.9100          n/a           n/a  1.000x       n/a
cached path      0.0933   0.1000          n/a           n/a  0.108x       n/a
write bytes      0.0002   0.0003          n/a           n/a  0.000x       n/a
cached path: 0.108x of a full render (meets the 0.25x target)
"""


def test_wrk_output_is_read_with_rate_latency_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 19390
    assert result.seconds == 10.0
    assert result.rate == pytest.approx(1939.0)
    assert result.latency["50%"] == pytest.approx(0.00093)
    assert result.latency["99%"] == pytest.approx(1.2)
    assert result.bad_status == 7
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert result.errors == 12


def test_wrk_output_without_errors_has_none() -> None:
    text = "  120 requests in 2.00m, 1.00MB read\nRequests/sec:      1.00\n"
    result = parse_wrk(text)
    assert (result.requests, result.seconds, result.errors) == (120, 120.0, 0)
    assert result.rate == 1.0


def test_wrk_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="requests in"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500.00us", 0.0005), ("3.45ms", 0.00345), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0)],
)
def test_wrk_times_are_converted_to_seconds(text: str, seconds: float) -> None:
    assert harness.wrk_seconds(text) == pytest.approx(seconds)


def test_wrk_time_without_a_unit_is_refused() -> None:
    with pytest.raises(ValueError):
        harness.wrk_seconds("12")


def test_backpain_bench_output_gives_the_medians() -> None:
    times = parse_backpain_bench(BENCH_OUTPUT)
    assert times == {"full render": 0.8613, "cached path": 0.0933, "write bytes": 0.0002}


def test_backpain_bench_output_without_rows_is_an_error() -> None:
    with pytest.raises(ValueError, match="cached path"):
        parse_backpain_bench("backpain_bench: Benchmark failed\n")


def test_goals_compare_the_ratio_in_their_direction() -> None:
    assert Goal(">=", 0.8).met(0.8) and not Goal(">=", 0.8).met(0.79)
    assert Goal("<=", 0.1).met(0.1) and not Goal("<=", 0.1).met(0.11)
    assert str(Goal(">=", 0.8)) == "≥ 0.8x"
    assert str(Goal("<=", 1.1)) == "≤ 1.1x"
    with pytest.raises(ValueError):
        Goal("<", 1.0)


def test_a_row_takes_the_median_of_its_rounds_and_the_ratio_ours_over_baseline() -> None:
    row = Row("article", "article page", "constant page", "req/s", Goal(">=", 0.8))
    row.ours += [100.0, 300.0, 200.0]
    row.baseline += [1000.0, 900.0, 1100.0]
    assert row.ours_figure == 200.0
    assert row.baseline_figure == 1000.0
    assert row.ratio == pytest.approx(0.2)
    assert row.met is False
    row.ours[:] = [900.0]
    assert row.met is True


def test_a_row_without_figures_a_goal_or_a_valid_run_has_no_verdict() -> None:
    row = Row("pdf", "cached path", "full render", "s", Goal("<=", 0.1))
    assert not row.measured and row.met is None
    assert harness.verdict(row) == "not measured"
    row.ours.append(0.05)
    row.baseline.append(1.0)
    assert row.met is True
    row.valid = False
    assert row.met is None and harness.verdict(row) == "invalid run"
    info = Row("info", "article", "form page", "req/s", None, ours=[1.0], baseline=[2.0])
    assert info.met is None and harness.verdict(info) == "(no goal)"
    zero = Row("z", "a", "b", "req/s", Goal(">=", 1), ours=[1.0], baseline=[0.0])
    assert math.isnan(zero.ratio) and zero.met is None


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (4617.2, "req/s", "4,617 req/s"),
        (12.345, "/s", "12.3 /s"),
        (2.214, "/s", "2.21 /s"),
        (0.0933, "s", "93.3 ms"),
        (1.5, "s", "1.50 s"),
        (392.04, "MiB", "392.0 MiB"),
        (float("nan"), "req/s", "n/a"),
    ],
)
def test_figures_are_written_with_their_unit(value: float, unit: str, text: str) -> None:
    assert harness.figure(value, unit) == text


def test_results_markdown_has_the_table_machine_versions_and_details() -> None:
    met = Row("signup", "sign-up POST", "bare INSERT view", "req/s", Goal(">=", 0.8))
    met.ours += [800.0, 820.0]
    met.baseline += [900.0, 1000.0]
    met.notes.append("ours: 2400 rows for 2400 requests")
    missed = Row("pdf", "cached PDF", "full render", "s", Goal("<=", 0.1))
    missed.ours.append(0.12)
    missed.baseline.append(1.0)
    text = results_markdown(
        [met, missed],
        machine={"CPU": "Test CPU", "cores": "2"},
        versions={"Python": "3.13.0", "PostgreSQL": "15.2"},
        settings={"date": "2001-02-03 04:05 UTC", "mode": "quick"},
        notes=["the machine was shared"],
        details=["deliveries by status: sent 10"],
    )
    lines = text.splitlines()
    assert lines[0] == "# Benchmark results"
    assert (
        "| sign-up POST | bare INSERT view | 950 req/s | 810 req/s | 0.853x | ≥ 0.8x | **met** |"
        in lines
    )
    assert "| cached PDF | full render | 1.00 s | 120.0 ms | 0.120x | ≤ 0.1x | not met |" in lines
    for expected in (
        "- CPU: Test CPU",
        "- cores: 2",
        "- PostgreSQL: 15.2",
        "- date: 2001-02-03 04:05 UTC",
        "- the machine was shared",
        "- **sign-up POST**: ours 800 req/s, 820 req/s; baseline 900 req/s, 1,000 req/s",
        "  - ours: 2400 rows for 2400 requests",
        "- deliveries by status: sent 10",
    ):
        assert expected in lines, expected
    assert text.endswith("\n")


def test_run_modes_fill_the_options_not_given() -> None:
    run = importlib.import_module("benchmarks.run")
    quick = run.parse_args(["--quick", "--seconds", "7"])
    assert (quick.seconds, quick.rounds, quick.reports) == (7.0, 1, 100)
    assert quick.rows == list(run.ROWS)
    full = run.parse_args(["--full", "--rows", "worker"])
    assert (full.reports, full.rows) == (5000, ["worker"])
    with pytest.raises(SystemExit):
        run.parse_args(["--rows", "nonsense"])


def test_signup_script_arguments_carry_cookie_token_and_our_extra_fields() -> None:
    from benchmarks.load import FormSession, signup_script_args

    session = FormSession(
        cookie="csrftoken=abc", fields={"csrfmiddlewaretoken": "tok", "article": "a-b"}
    )
    assert signup_script_args(session, "/signup/", "o1", ours=True) == [
        "/signup/", "csrftoken=abc", "tok", "o1", "&article=a-b&website=",
    ]  # fmt: skip
    assert signup_script_args(session, "/form/", "b1", ours=False)[-1] == ""


def test_mail_baseline_takes_the_parts_of_the_report_email() -> None:
    from benchmarks.mail_baseline import email_parts

    email = EmailMultiAlternatives(
        subject="Your report",
        body="Hello",
        from_email="Reports <r@example.com>",
        to=["reader@example.com"],
        headers={"List-Unsubscribe": "<https://example.com/u/1/>"},
    )
    email.attach_alternative("<p>Hello</p>", "text/html")
    email.attach("report.pdf", b"%PDF-1.7 bytes", "application/pdf")
    parts = email_parts(email.message().as_bytes())
    assert parts["subject"] == "Your report"
    assert parts["from"] == "Reports <r@example.com>"
    assert parts["text"].strip() == "Hello"
    assert parts["html"].strip() == "<p>Hello</p>"
    assert parts["attachments"] == [("report.pdf", b"%PDF-1.7 bytes", "application/pdf")]
    assert parts["headers"] == {"List-Unsubscribe": "<https://example.com/u/1/>"}


def test_the_baseline_site_has_the_example_sites_middleware() -> None:
    """The ratios compare the app with a bare view behind the same middleware."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def middleware(path: Path) -> list[str]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MIDDLEWARE":
                return ast.literal_eval(node.value)
        raise AssertionError(f"no MIDDLEWARE in {path}")

    assert middleware(root / "benchmarks/baseline/settings.py") == middleware(
        root / "example_project/settings.py"
    )


class FakeFrame:
    """The part of a pyinstrument frame the profile summary reads."""

    def __init__(self, path: str, time: float, children=(), function: str = "f") -> None:
        self.file_path = path
        self.file_path_short = path.rsplit("/", 1)[-1]
        self.function = function
        self.line_no = 1
        self.time = time
        self.children = list(children)


def test_profile_costs_go_to_the_outermost_owning_frame_and_the_rest_to_its_context() -> None:
    from benchmarks.profile_requests import OTHER, categorise, flat_text

    site = "/venv/lib/python3.13/site-packages"
    tree = FakeFrame(
        "/work/benchmarks/profile_requests.py",
        10.0,
        [
            FakeFrame(
                f"{site}/django/template/base.py",
                6.0,
                [
                    # crispy owns its subtree, the template code inside it included
                    FakeFrame(
                        f"{site}/crispy_forms/templatetags/crispy_forms_tags.py",
                        4.0,
                        [FakeFrame(f"{site}/django/template/base.py", 3.0)],
                    ),
                    FakeFrame("/work/backpain_report/views.py", 1.0),  # in the template context
                ],
            ),
            FakeFrame(
                "/work/backpain_report/stats.py", 2.0, [FakeFrame(f"{site}/django/db/x.py", 2)]
            ),
        ],
    )
    totals = categorise(tree)
    assert totals["sign-up form: crispy-forms render"] == 4.0
    assert totals["page-view count (a write per GET)"] == 2.0
    assert totals["template rendering (the rest of the page)"] == 2.0  # 1.0 self + views.py
    assert totals[OTHER] == 2.0  # the root's own time
    assert "ORM and SQL (other queries)" not in totals  # the page view's query is its own
    assert sum(totals.values()) == 10.0
    text = flat_text(tree, requests=2, top=2)
    assert text.splitlines()[0] == "self time per request (of 5000.00 ms profiled), top 2"
    assert len(text.splitlines()) == 3


def test_a_section_is_appended_then_replaced_in_place():
    from benchmarks.harness import section_get, section_put

    text = section_put("# Results\n\n| table |\n", "multihost", "first")
    assert text.endswith("<!-- multihost:start -->\nfirst\n<!-- multihost:end -->\n")
    again = section_put(text.replace("| table |", "| new table |"), "multihost", "second")
    assert again.count("multihost:start") == 1 and "second" in again and "first" not in again
    assert "| new table |" in again
    assert section_get("no markers here", "multihost") is None


def test_make_bench_keeps_the_multihost_section_when_it_rewrites_results():
    """``make bench`` writes RESULTS.md anew; the section benchmarks/multihost.py wrote stays."""
    from benchmarks.harness import section_put, sections_carry

    old = section_put("# old table\n", "multihost", "1 host: 8/s, 2 hosts: 15/s")
    new = sections_carry(old, "# new table\n", ["multihost"])
    assert new.startswith("# new table\n")
    assert "1 host: 8/s, 2 hosts: 15/s" in new
    assert sections_carry("# no section\n", "# new\n", ["multihost"]) == "# new\n"


def test_the_webhook_row_is_a_rate_with_its_goal_and_events_per_mode() -> None:
    run = importlib.import_module("benchmarks.run")
    row = run.make_rows()["webhook"]
    assert (row.unit, row.goal) == ("/s", Goal(">=", 0.5))
    assert "webhook" in run.ROWS
    assert run.parse_args(["--quick"]).webhook_events == 100
    assert run.parse_args([]).webhook_events == 500
    assert run.parse_args(["--rows", "webhook", "--webhook-events", "7"]).webhook_events == 7
    with pytest.raises(SystemExit):
        run.parse_args(["--webhook-events", "0"])


def test_only_the_rows_that_load_the_web_servers_need_wrk() -> None:
    run = importlib.import_module("benchmarks.run")
    from benchmarks.stack import BenchStack

    assert run.WEB_LOAD_ROWS.isdisjoint({"pdf", "worker", "webhook"})
    assert not any("wrk" in problem for problem in BenchStack.problems(web_load=False))


def test_the_bare_baseline_signs_like_the_app_and_verifies() -> None:
    """The baseline's POST carries the app's headers, signed the same way (Standard Webhooks)."""
    import datetime

    from django.utils import timezone
    from standardwebhooks.webhooks import Webhook

    from backpain_report.delivery.webhooks import signed_headers
    from backpain_report.models import WebhookEndpoint, WebhookEvent
    from backpain_report.webhooks.endpoints import secret_new
    from benchmarks.webhook_bench import bare_headers

    secret = secret_new()
    body = b'{"type":"subscriber.created"}'
    now = timezone.now()
    bare = bare_headers(Webhook(secret), "msg_bench", body, now)
    event = WebhookEvent(endpoint=WebhookEndpoint(secret=secret), webhook_id="msg_bench")
    ours = signed_headers(event, body, now)
    assert set(bare) == set(ours)
    assert bare["webhook-signature"] == ours["webhook-signature"]
    lower = {name.lower(): value for name, value in bare.items()}
    Webhook(secret).verify(body, lower)  # raises if the signature does not verify
    assert (
        now - datetime.timedelta(seconds=1)
        <= datetime.datetime.fromtimestamp(int(lower["webhook-timestamp"]), datetime.timezone.utc)
        <= now
    )
