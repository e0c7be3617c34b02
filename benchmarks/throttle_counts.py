"""How many of 50 simultaneous throttle hits each cache backend counts.

    .venv/bin/python benchmarks/throttle_counts.py [--hits 50] [--rounds 5]

Runs ``backpain_report.rights.throttling.hit_count`` from ``--hits`` threads released at once
(processes for the database cache on PostgreSQL) and prints, per backend, what the count reached
in each round. Local memory, the file cache and the database cache on SQLite always run; the
database cache on PostgreSQL with ``BACKPAIN_TEST_POSTGRES_URL`` (in a database it creates and
drops), Redis with ``BACKPAIN_TEST_REDIS_URL`` (db 15, keys of its own, deleted afterwards),
Memcached with ``BACKPAIN_BENCH_MEMCACHED`` (``host:port``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def configure(folder: str, postgres_url: str | None = None) -> dict[str, dict]:
    """Settings with one cache per backend; on ``postgres_url``, only the database cache."""
    import django
    from django.conf import settings

    database = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(folder, "bench.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
    if postgres_url:
        parts = urlsplit(postgres_url)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "",
            "PORT": parts.port or 5432,
        }
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "b"},
        "file": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.path.join(folder, "file-cache"),
        },
        "db (SQLite)": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "throttle_bench",
        },
    }
    if postgres_url:
        caches = {
            "default": caches["default"],
            "db": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"},
        }
    elif os.environ.get("BACKPAIN_TEST_REDIS_URL"):
        url = urlsplit(os.environ["BACKPAIN_TEST_REDIS_URL"])._replace(path="/15").geturl()
        caches["redis"] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"backpain-throttle-bench-{secrets.token_hex(4)}",
        }
    if os.environ.get("BACKPAIN_BENCH_MEMCACHED") and not postgres_url:
        caches["memcached"] = {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": os.environ["BACKPAIN_BENCH_MEMCACHED"],
        }
    settings.configure(
        SECRET_KEY="throttle-bench",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        DATABASES={"default": database},
        CACHES=caches,
        BACKPAIN_REPORT={"FROM_EMAIL": "bench@example.com"},
    )
    django.setup()
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)
    return caches


def count_with_threads(alias: str, hits: int) -> int:
    from django.core.cache import caches
    from django.db import connections
    from django.test.utils import override_settings

    from backpain_report.rights import throttling

    key = f"backpain_report:throttle:bench:{secrets.token_hex(8)}"
    barrier = threading.Barrier(hits)

    def hit() -> None:
        barrier.wait()
        throttling.hit_count(key, 600)
        caches[alias].close()
        connections.close_all()

    app = {"FROM_EMAIL": "bench@example.com", "THROTTLE_CACHE": alias}
    with override_settings(BACKPAIN_REPORT=app):
        threads = [threading.Thread(target=hit) for _ in range(hits)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return throttling.hit_count(key, 600) - 1


def _process_hit(key: str) -> None:
    from django.db import connections

    from backpain_report.rights import throttling

    throttling.hit_count(key, 600)
    connections.close_all()


def count_with_processes(alias: str, hits: int) -> int:
    """Like :func:`count_with_threads`, from ``hits`` forked processes (a pool started first)."""
    from django.db import connections
    from django.test.utils import override_settings

    from backpain_report.rights import throttling

    key = f"backpain_report:throttle:bench:{secrets.token_hex(8)}"
    app = {"FROM_EMAIL": "bench@example.com", "THROTTLE_CACHE": alias}
    with override_settings(BACKPAIN_REPORT=app):
        connections.close_all()
        with multiprocessing.get_context("fork").Pool(hits) as pool:
            pool.map(_process_hit, [key] * hits, chunksize=1)
        return throttling.hit_count(key, 600) - 1


def on_postgres(server_url: str, argv: list[str]) -> None:
    """Run this script again on a fresh PostgreSQL database (the test tiers'), then drop it."""
    import subprocess

    from tests.realservices.support.database import Database

    database = Database(server_url)
    database.create()
    try:
        subprocess.run([sys.executable, __file__, *argv, "--postgres", database.url], check=True)
    finally:
        database.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", help=argparse.SUPPRESS)  # the child run on PostgreSQL
    options = parser.parse_args()
    argv = ["--hits", str(options.hits), "--rounds", str(options.rounds)]
    with tempfile.TemporaryDirectory(prefix="backpain-throttle-bench-") as folder:
        caches = configure(folder, options.postgres)
        if options.postgres:
            counts = [count_with_processes("db", options.hits) for _ in range(options.rounds)]
            print(f"{'db (Postgres)':14} {options.hits} processes: counted {counts}")
            return 0
        for alias in [a for a in caches if a != "default"]:
            counts = [count_with_threads(alias, options.hits) for _ in range(options.rounds)]
            print(f"{alias:14} {options.hits} threads: counted {counts}")
            if alias == "redis":  # only the keys this run made
                from django.core.cache import caches as handler

                client = handler[alias]._cache.get_client(write=True)
                for key in client.scan_iter(match=f"{caches[alias]['KEY_PREFIX']}:*"):
                    client.delete(key)
    if os.environ.get("BACKPAIN_TEST_POSTGRES_URL"):
        on_postgres(os.environ["BACKPAIN_TEST_POSTGRES_URL"], argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
