"""``backpain_bench``: what one report costs, full render against the cached path.

Needs no database rows: the bundled report is built in memory (an unsaved ``Report`` with a pk)
and cached bodies go to a temporary directory, so the site's storage is left alone. Times are
wall-clock per report; memory is the tracemalloc peak (Python allocations) and the rise of the
process's peak RSS (Pango, HarfBuzz and the rest of C included; Linux only) over the runs.
"""

from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backpain_report import seed
from backpain_report.models import Report
from backpain_report.report import pdfcache
from backpain_report.report.pdf import render_report_pdf

PREPARED_ON = datetime.date(2025, 3, 14)


def bench_report() -> Report:
    """The bundled report as an unsaved row with a pk (nothing is read from the database)."""
    return Report(
        pk=0,
        title=seed.REPORT_TITLE,
        subtitle=seed.REPORT_SUBTITLE,
        slug=seed.REPORT_SLUG,
        edition=1,
        author="The Back Pain Report team",
        body=seed.read_report_body(),
    )


def _status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` figure of this process in KiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def time_interleaved(jobs: dict[str, Callable[[int], Any]], renders: int) -> dict[str, list[float]]:
    """Seconds of each ``job(i)`` over ``renders`` rounds, the jobs taking turns within each
    round, so that a machine busy with other work slows every path alike."""
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for index in range(renders):
        for name, job in jobs.items():
            start = time.perf_counter()
            job(index)
            times[name].append(time.perf_counter() - start)
    return times


def measure(
    job: Callable[[int], Any], renders: int, traced: int = 3, times: list[float] | None = None
) -> dict[str, float | None]:
    """Median and p90 seconds of ``job(i)`` over ``renders`` runs (or of ``times``, measured
    already), then its memory peaks over ``traced`` more runs (tracemalloc slows rendering
    down, so they are timed apart)."""
    if times is None:
        times = time_interleaved({"job": job}, renders)["job"]
    if not traced:
        return {"median": statistics.median(times), "p90": percentile(times, 0.9),
                "python_peak": None, "rss_rise": None}  # fmt: skip
    gc.collect()
    rss_before = _status_kib("VmRSS")
    peak_reset = _reset_peak_rss()
    tracemalloc.start()
    for index in range(traced):
        job(renders + index)
    python_peak = float(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    rss_peak = _status_kib("VmHWM") if peak_reset else None
    rss_rise = (rss_peak - rss_before) * 1024.0 if rss_peak and rss_before else None
    return {
        "median": statistics.median(times),
        "p90": percentile(times, 0.9),
        "python_peak": python_peak,
        "rss_rise": rss_rise,
    }


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1048576:.1f}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Command(BaseCommand):
    help = "Measure the cost of one report: full render, cached path, and writing bytes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--renders", type=int, default=20, help="Renders per path (20).")
        parser.add_argument(
            "--memory-renders",
            type=int,
            default=0,
            help="Then render this many reports (cached path) and print the RSS as it goes.",
        )
        parser.add_argument("--memory-every", type=int, default=100, help="RSS every N (100).")
        parser.add_argument(
            "--traced-renders",
            type=int,
            default=3,
            help="Renders per path under tracemalloc for the memory peaks (3).",
        )
        parser.add_argument(
            "--max-ratio",
            type=float,
            default=None,
            help="Fail if the cached path's median exceeds this share of a full render's.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        renders = options["renders"]
        if renders < 1 or options["memory_every"] < 1:
            raise CommandError("--renders and --memory-every must be at least 1.")
        if options["memory_renders"] < 0 or options["traced_renders"] < 0:
            raise CommandError("--memory-renders and --traced-renders cannot be negative.")
        report = bench_report()
        with tempfile.TemporaryDirectory(prefix="backpain-bench-") as folder:
            storage = FileSystemStorage(location=folder)
            try:
                results = self._run(
                    report, storage, Path(folder), renders, options["traced_renders"]
                )
                if options["memory_renders"]:
                    self._memory(
                        report, storage, options["memory_renders"], options["memory_every"]
                    )
            except Exception as exc:
                raise CommandError(f"Benchmark failed: {type(exc).__name__}: {exc}") from exc
            finally:
                pdfcache.clear_memory()
        ratio = results["cached path"]["median"] / results["full render"]["median"]
        limit = options["max_ratio"]
        if limit is not None and ratio > limit:
            raise CommandError(f"Cached path at {ratio:.2f}x of a full render, above {limit}x.")

    def _run(
        self, report: Report, storage: FileSystemStorage, folder: Path, renders: int, traced: int
    ) -> dict[str, dict[str, float | None]]:
        def full(i: int) -> bytes:
            return render_report_pdf(
                report=report, reader_name=f"Reader {i}", prepared_on=PREPARED_ON
            )

        def cached(i: int) -> bytes:
            return pdfcache.report_pdf(
                report=report, reader_name=f"Reader {i}", prepared_on=PREPARED_ON, storage=storage
            )

        start = time.perf_counter()
        sample = cached(0)  # renders and stores the body of the edition (once per edition)
        first = time.perf_counter() - start
        target = folder / "out.pdf"

        def floor(i: int) -> None:
            target.write_bytes(sample)

        jobs = {"full render": full, "cached path": cached, "write bytes": floor}
        times = time_interleaved(jobs, renders)
        results = {name: measure(job, renders, traced, times[name]) for name, job in jobs.items()}
        self._print(results, renders, first, len(sample))
        return results

    def _print(
        self, results: dict[str, dict[str, float | None]], renders: int, first: float, size: int
    ) -> None:
        out = self.stdout.write
        out(f"backpain_bench: {renders} renders per path, report of {size / 1024:.0f} KiB")
        out(f"machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}")
        out(f"first report of an edition (body rendered and stored): {first:.3f} s")
        out(f"{'path':<13} {'median s':>9} {'p90 s':>8} {'py peak MiB':>12} {'RSS rise MiB':>13}"
            f" {'time x':>7} {'py mem x':>9}")  # fmt: skip
        base = results["full render"]
        for name, row in results.items():
            time_ratio = row["median"] / base["median"]
            peak, base_peak = row["python_peak"], base["python_peak"]
            mem_ratio = f"{peak / base_peak:.3f}x" if peak is not None and base_peak else "n/a"
            out(
                f"{name:<13} {row['median']:>9.4f} {row['p90']:>8.4f} "
                f"{_mib(row['python_peak']):>12} {_mib(row['rss_rise']):>13} "
                f"{time_ratio:>6.3f}x {mem_ratio:>9}"
            )
        ratio = results["cached path"]["median"] / base["median"]
        verdict = "meets" if ratio <= 0.25 else "misses"
        out(f"cached path: {ratio:.3f}x of a full render ({verdict} the 0.25x target)")

    def _memory(self, report: Report, storage: FileSystemStorage, count: int, every: int) -> None:
        out = self.stdout.write
        gc.collect()
        start = _status_kib("VmRSS")
        out(f"memory over {count} reports (cached path), RSS in MiB:")
        out(f"  start: {_mib(start * 1024 if start else None)}")
        for index in range(1, count + 1):
            pdfcache.report_pdf(
                report=report,
                reader_name=f"Reader {index}",
                prepared_on=PREPARED_ON,
                storage=storage,
            )
            if index % every == 0 or index == count:
                rss = _status_kib("VmRSS")
                out(f"  after {index}: {_mib(rss * 1024 if rss else None)}")
        end = _status_kib("VmRSS")
        if start and end:
            out(
                f"  growth: {(end - start) / 1024:.1f} MiB ({(end - start) / count:.1f} KiB/report)"
            )
