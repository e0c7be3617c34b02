import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connection

from backpain_report.stats import page_views_flush
from backpain_report.sweep import deliveries_sweep, signups_sweep


class Command(BaseCommand):
    help = (
        "Run the sweep: re-publish sign-ups and deliveries whose message was lost. Once, or "
        "with --every, in a loop (instead of celery beat, or beside it on another host)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="At most this many of each.")
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Sweep again every SECONDS until stopped (SIGTERM or Ctrl-C); a sweep that "
            "fails (broker or database away) is reported and the loop goes on.",
        )
        parser.add_argument(
            "--runs", type=int, metavar="N", help="With --every: stop after N sweeps."
        )

    def handle(self, *args, limit: int = 1000, every=None, runs=None, **options):
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        if every is None:
            if runs is not None:
                raise CommandError("--runs needs --every.")
            failed = self.sweep_once(limit)
            if failed:
                raise CommandError(f"{failed} could not be published: is the broker reachable?")
            return
        if every <= 0:
            raise CommandError("--every must be a positive number of seconds.")
        if runs is not None and runs < 1:
            raise CommandError("--runs must be at least 1.")
        self.sweep_loop(limit, every, runs)

    def sweep_once(self, limit: int) -> int:
        """One sweep of sign-ups and deliveries; how many could not be published."""
        page_views_flush()
        failed = 0
        for kind, sweep in (("sign-ups", signups_sweep), ("deliveries", deliveries_sweep)):
            result = sweep(limit=limit)
            failed += result.failed
            self.stdout.write(
                f"Sweep: {result.found} stranded {kind} found, {result.published} re-enqueued."
            )
            if result.given_up:
                self.stdout.write(
                    f"{result.given_up} deliveries failed: their worker was lost on the last "
                    "attempt."
                )
        return failed

    def sweep_loop(self, limit: int, every: float, runs: int | None) -> None:
        """Sweep every ``every`` seconds until SIGTERM/SIGINT (or ``runs`` sweeps)."""
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        done = 0
        while not stop.is_set():
            if not connection.in_atomic_block:  # (a caller's transaction is left alone)
                close_old_connections()  # a connection the database dropped is not reused
            try:
                failed = self.sweep_once(limit)
            except DatabaseError as exc:
                self.stderr.write(f"Sweep failed: the database is unreachable ({exc}).")
            else:
                if failed:
                    self.stderr.write(f"{failed} could not be published: is the broker reachable?")
            done += 1
            if runs is not None and done >= runs:
                break
            stop.wait(every)
