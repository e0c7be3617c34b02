"""Where a request's time goes: the article page GET and the sign-up POST, profiled in-process.

    .venv/bin/python benchmarks/profile_requests.py [--requests 300] [--output benchmarks/profiles]

Starts the services the suite uses (a PostgreSQL database of its own, a private Redis as broker
and cache, the SMTP sink; no gunicorn, no worker), configures Django in this process as the
benchmark site (``benchmarks.site_settings``) and sends requests through Django's test client
with CSRF checks on and a browser's User-Agent:

- the article page GET as a first-time visitor (no cookie: a new CSRF cookie and token each time);
- the sign-up POST with the CSRF cookie and token and a new address each time (303 expected).

For each it measures the median time per request without a profiler, the SQL queries and new
Redis connections per request, then profiles ``--requests`` more with pyinstrument and writes
``<name>.txt`` (the call tree), ``<name>.flat.txt`` (functions by self time),
``<name>.speedscope.json`` (a flame graph for speedscope.app) and ``summary.md`` (the time
per request split into the costs named in issue 11).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.stack import DEFAULT_POSTGRES, BenchStack  # noqa: E402

OUTPUT = ROOT / "benchmarks" / "profiles"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) backpain-bench"

# (name, matches a frame's file path, owns the frame's whole subtree). The outermost frame that
# matches an owning category gets its inclusive time; a non-owning ("context") category gets the
# self time of its frames and of every unmatched frame below them.
CATEGORIES: list[tuple[str, Callable[[str], bool], bool]] = [
    ("page-view count (a write per GET)", lambda f: f.endswith("backpain_report/stats.py"), True),
    ("sign-up form: crispy-forms render", lambda f: "/crispy_" in f, True),
    (
        "article body: Markdown + nh3",
        lambda f: (
            f.endswith("backpain_report/report/markup.py") or "/markdown/" in f or "/nh3" in f
        ),
        True,
    ),
    (
        "broker publish (Celery, kombu, redis-py)",
        lambda f: (
            f.endswith("backpain_report/delivery/publishing.py")
            or "/kombu/" in f
            or "/celery/" in f
        ),
        True,
    ),
    ("per-IP throttle (cache)", lambda f: f.endswith("backpain_report/rights/throttling.py"), True),
    ("CSRF middleware and token", lambda f: f.endswith("django/middleware/csrf.py"), True),
    ("sessions middleware", lambda f: "django/contrib/sessions/" in f, True),
    (
        "auth and messages middleware",
        lambda f: "django/contrib/auth/" in f or "django/contrib/messages/" in f,
        True,
    ),
    (
        "form: build and validate",
        lambda f: (
            "django/forms/" in f
            or f.endswith(("backpain_report/forms.py", "backpain_report/rights/addresses.py"))
        ),
        True,
    ),
    ("ORM and SQL (other queries)", lambda f: "django/db/" in f or "/psycopg" in f, True),
    ("URL resolving and reversing", lambda f: "django/urls/" in f, True),
    ("template rendering (the rest of the page)", lambda f: "django/template/" in f, False),
    (
        "Django request/response handling (the rest)",
        lambda f: (
            "django/core/handlers/" in f
            or "django/utils/deprecation.py" in f
            or "django/http/" in f
            or "django/middleware/" in f
        ),
        False,
    ),
    ("test client (not in production)", lambda f: "django/test/" in f, False),
]
OTHER = "other (view code, signals, logging, ...)"


def categorise(root) -> dict[str, float]:
    """Seconds per category in a pyinstrument frame tree (see ``CATEGORIES``)."""
    totals: dict[str, float] = defaultdict(float)

    def walk(frame, context: str) -> None:
        path = (frame.file_path or "").replace("\\", "/")
        for name, matches, owning in CATEGORIES:
            if path and matches(path):
                if owning:
                    totals[name] += frame.time
                    return
                context = name
                break
        children = frame.children
        totals[context] += frame.time - sum(child.time for child in children)
        for child in children:
            walk(child, context)

    walk(root, OTHER)
    return dict(totals)


# Costs inside the categories above, worth naming on their own: (name, matches a file path).
INSIDE: list[tuple[str, Callable[[str], bool]]] = [
    (
        "of which: package metadata reads (importlib.metadata)",
        lambda f: "importlib/metadata" in f,
    ),
    (
        "of which: redis-py connection I/O (sockets: connect, send, receive)",
        lambda f: f.endswith("redis/connection.py"),
    ),
]


def subtree_time(root, matches: Callable[[str], bool]) -> float:
    """Seconds under the outermost frames whose file path ``matches``."""
    path = (root.file_path or "").replace("\\", "/")
    if path and matches(path):
        return root.time
    return sum(subtree_time(child, matches) for child in root.children)


def flat_text(root, requests: int, top: int = 50) -> str:
    """The functions with the most self time (all libraries shown), in ms per request."""
    self_times: dict[str, float] = defaultdict(float)

    def walk(frame, parent: str) -> None:
        children = frame.children
        # pyinstrument's synthetic "[self]" frames hold their parent's own time.
        synthetic = getattr(frame, "is_synthetic", False)
        where = (
            parent if synthetic else f"{frame.function}  {frame.file_path_short}:{frame.line_no}"
        )
        self_times[where] += frame.time - sum(child.time for child in children)
        for child in children:
            walk(child, where)

    walk(root, "(root)")
    total = root.time or 1.0
    lines = [f"self time per request (of {total / requests * 1000:.2f} ms profiled), top {top}"]
    for where, seconds in sorted(self_times.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{seconds / requests * 1000:8.3f} ms {seconds / total:6.1%}  {where}")
    return "\n".join(lines) + "\n"


class RedisConnects:
    """Counts new Redis sockets (redis-py's ``Connection._connect``) while active."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def counting(self):
        import redis.connection

        patched = {}
        for cls in vars(redis.connection).values():
            if isinstance(cls, type) and "_connect" in vars(cls):
                patched[cls] = original = vars(cls)["_connect"]

                def counted(connection, *args, _original=original, **kwargs):
                    self.count += 1
                    return _original(connection, *args, **kwargs)

                cls._connect = counted
        try:
            yield self
        finally:
            for cls, original in patched.items():
                cls._connect = original


def _article_request(client) -> Callable[[int], None]:
    def get(_index: int) -> None:
        client.cookies.clear()  # a first-time visitor, as wrk's requests are
        response = client.get("/")
        assert response.status_code == 200, response.status_code
        assert b"csrfmiddlewaretoken" not in response.content  # the same page for everyone

    return get


def _signup_request(client) -> Callable[[int], None]:
    import re

    page = client.get("/").content.decode()
    slug = re.search(r'name="article" value="([^"]*)"', page).group(1)
    run = os.urandom(3).hex()

    def post(index: int) -> None:
        response = client.post(
            "/signup/",
            {
                "name": "Reader",
                "email": f"profile-{run}-{index}@example.com",
                "consent": "on",
                "article": slug,
                "website": "",
            },
            headers={"Sec-Fetch-Site": "same-origin"},  # as a browser posts from the page
        )
        assert response.status_code == 303, (response.status_code, response.content[:500])

    return post


def profile(name: str, request: Callable[[int], None], args, out: Path) -> dict:
    """Time, count queries and connections, then profile ``args.requests`` requests."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler
    from pyinstrument.renderers import SpeedscopeRenderer

    index = 0
    for _ in range(args.warmup):
        request(index)
        index += 1
    times = []
    for _ in range(args.requests):
        started = time.perf_counter()
        request(index)
        times.append(time.perf_counter() - started)
        index += 1
    with CaptureQueriesContext(connection) as queries, RedisConnects().counting() as redis:
        request(index)
        index += 1
    sql = [query["sql"] for query in queries.captured_queries]  # now: the log is reset later
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(args.requests):
        request(index)
        index += 1
    profiler.stop()
    session = profiler.last_session
    (out / f"{name}.txt").write_text(profiler.output_text(unicode=True, color=False))
    (out / f"{name}.speedscope.json").write_text(profiler.output(SpeedscopeRenderer()))
    root = session.root_frame()
    (out / f"{name}.flat.txt").write_text(flat_text(root, args.requests))
    totals = categorise(root)
    inside = {name: subtree_time(root, matches) / root.time for name, matches in INSIDE}
    return {
        "median_ms": statistics.median(times) * 1000,
        "p90_ms": statistics.quantiles(times, n=10)[-1] * 1000,
        "profiled_ms": root.time / args.requests * 1000,
        "shares": {k: v / root.time for k, v in totals.items()},
        "inside": {k: v for k, v in inside.items() if v >= 0.005},
        "queries": sql,
        "redis_connects": redis.count,
    }


def summary_markdown(results: dict[str, dict], args) -> str:
    import django

    lines = [
        "# Profiles: where a request's time goes",
        "",
        "Written by `benchmarks/profile_requests.py` (`make profile`): Django's test client, "
        "in-process, on PostgreSQL and Redis (broker and cache), CSRF checks on, "
        f"{args.requests} requests timed and {args.requests} profiled with pyinstrument per "
        f"path, after {args.warmup} warm-up requests. Django {django.get_version()}, Python "
        f"{sys.version.split()[0]}. Other developers share this machine's 2 cores: times "
        "are noisy, the shares less so.",
        "",
        "ms per request = the share of the profiled time x the median time without profiler.",
    ]
    for name, result in results.items():
        lines += [
            "",
            f"## {name}",
            "",
            f"Median {result['median_ms']:.2f} ms per request (p90 {result['p90_ms']:.2f} ms) "
            f"without the profiler, {result['profiled_ms']:.2f} ms with it; "
            f"{len(result['queries'])} SQL queries and {result['redis_connects']} new Redis "
            "connections per request.",
            "",
            "| cost | ms per request | share |",
            "| --- | --- | --- |",
        ]
        for category, share in sorted(result["shares"].items(), key=lambda kv: -kv[1]):
            if share >= 0.005:
                lines.append(f"| {category} | {share * result['median_ms']:.2f} | {share:.1%} |")
        for category, share in result["inside"].items():
            lines.append(f"| {category} | {share * result['median_ms']:.2f} | {share:.1%} |")
        lines += ["", "Queries of one request:", ""]
        lines += [f"{i}. `{sql[:300]}`" for i, sql in enumerate(result["queries"], 1)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BACKPAIN_BENCH_POSTGRES_URL")
        or os.environ.get("BACKPAIN_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES,
    )
    parser.add_argument("--private-postgres", action="store_true")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    log_dir = ROOT / "test-artefacts" / "bench-profile"
    stack = BenchStack(
        log_dir=log_dir, postgres_url=args.postgres_url, private_postgres=args.private_postgres
    )
    try:
        stack.start_services()
        env = stack.site_env()
        env["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
        os.environ.update(env)
        import django

        django.setup()
        from django.test import Client

        client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=USER_AGENT)
        results = {
            "article page GET": profile("article_get", _article_request(client), args, args.output),
            "sign-up POST": profile("signup_post", _signup_request(client), args, args.output),
        }
        from django.db import connections

        connections.close_all()
    finally:
        stack.close()
    text = summary_markdown(results, args)
    (args.output / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
