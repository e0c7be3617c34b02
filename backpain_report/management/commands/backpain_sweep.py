import math
import signal
import threading
import time
import traceback

from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from backpain_report.delivery.sweep import deliveries_sweep, signups_sweep, webhook_events_sweep
from backpain_report.page.pageviews import page_views_flush
from backpain_report.services.followups import followups_schedule


class Command(BaseCommand):
    help = (
        "Run the sweep: re-publish sign-ups, deliveries and webhook events whose message was "
        "lost, and schedule the follow-up emails that are due. Once, or "
        "with --every, in a loop (instead of celery beat, or beside it on another host)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=1000, help="At most this many of each.")
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Sweep again every SECONDS until stopped (SIGTERM or Ctrl-C); a sweep that "
            "fails (broker or database away, or any other error) is reported and the loop goes "
            "on.",
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
        if not (math.isfinite(every) and every > 0):  # (nan would sweep without a pause)
            raise CommandError("--every must be a positive, finite number of seconds.")
        if runs is not None and runs < 1:
            raise CommandError("--runs must be at least 1.")
        self.sweep_loop(limit, every, runs)

    def sweep_once(self, limit: int) -> int:
        """One sweep of sign-ups, deliveries and webhook events; how many could not be
        published."""
        page_views_flush()
        failed = 0
        for kind, sweep in (
            ("sign-ups", signups_sweep),
            ("deliveries", deliveries_sweep),
            ("webhook events", webhook_events_sweep),
        ):
            result = sweep(limit=limit)
            failed += result.failed
            self.stdout.write(
                f"Sweep: {result.found} stranded {kind} found, {result.published} re-enqueued."
            )
            if result.given_up:
                self.stdout.write(
                    f"{result.given_up} {kind} failed: their worker was lost on the last attempt."
                )
        scheduled = followups_schedule()
        if scheduled:  # (a line only when some were due)
            self.stdout.write(f"Follow-ups: {scheduled} scheduled.")
        return failed

    def sweep_loop(self, limit: int, every: float, runs: int | None) -> None:
        """Sweep every ``every`` seconds until SIGTERM/SIGINT (or ``runs`` sweeps).

        The first signal lets the sweep under way finish, then the loop ends (exit status 0); a
        second one acts as it would have without this loop (SIGTERM ends the process, Ctrl-C
        raises KeyboardInterrupt), should a sweep hang. The handlers only set a flag, and the
        previous ones are put back when the loop ends.
        """
        stopping = False
        previous: dict[int, object] = {}

        def stop(signum, _frame):
            nonlocal stopping
            stopping = True  # no lock taken here: a handler can run while the loop holds one
            signal.signal(signum, _handler_or_default(previous.get(signum)))

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, stop)
        try:
            done = 0
            while not stopping:
                if not connection.in_atomic_block:  # (a caller's transaction is left alone)
                    close_old_connections()  # a connection the database dropped is not reused
                try:
                    failed = self.sweep_once(limit)
                except (OperationalError, InterfaceError) as exc:
                    self.stderr.write(f"Sweep failed: the database is unreachable ({exc}).")
                except Exception:  # noqa: BLE001 - a bug or a surprise: shown, and the loop goes on
                    self.stderr.write(f"Sweep failed:\n{traceback.format_exc().rstrip()}")
                else:
                    if failed:
                        self.stderr.write(
                            f"{failed} could not be published: is the broker reachable?"
                        )
                self.stdout.flush()  # a log reading a pipe sees each sweep as it ends
                done += 1
                if runs is not None and done >= runs:
                    break
                deadline = time.monotonic() + every
                while not stopping and (left := deadline - time.monotonic()) > 0:
                    time.sleep(min(left, STOP_CHECK))  # a signal is seen within STOP_CHECK
        finally:
            for signalled, handler in previous.items():
                signal.signal(signalled, _handler_or_default(handler))


#: Seconds between looks at the stop flag while the loop waits (a signal does not cut a sleep).
STOP_CHECK = 0.2


def _handler_or_default(handler):
    """``handler`` as ``signal.signal`` takes it (None, one not set from Python: the default)."""
    return signal.SIG_DFL if handler is None else handler
