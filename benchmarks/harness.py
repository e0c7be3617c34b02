"""The suite's pure parts: reading wrk's and ``backpain_bench``'s output, ratios, RESULTS.md.

Nothing here starts a process or opens a socket, so ``tests/test_bench_suite.py`` tests it all.
A :class:`Row` compares our figure with its baseline's figure measured in the same run; its
ratio is always ``ours / baseline`` and its :class:`Goal` says which way is better.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# --- wrk ----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def wrk_seconds(text: str) -> float:
    """``"3.45ms"`` -> 0.00345; wrk's units are us, ms, s, m and h."""
    match = re.fullmatch(_TIME, text.strip())
    if not match:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests, the seconds they took, and what went wrong."""

    requests: int
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)  # "50%" -> seconds
    bad_status: int = 0  # "Non-2xx or 3xx responses"
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout

    @property
    def rate(self) -> float:
        """Requests per second (completed requests over the run's duration)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.bad_status + sum(self.socket_errors.values())


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's summary (``--latency`` adds the percentiles); ValueError if it has none."""
    summary = re.search(r"(\d+) requests in " + _TIME, text)
    if not summary:
        raise ValueError(f"no 'N requests in T' line in wrk's output:\n{text[-2000:]}")
    requests = int(summary.group(1))
    seconds = float(summary.group(2)) * _UNITS[summary.group(3)]
    latency = {
        f"{m.group(1)}%": float(m.group(2)) * _UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(\d+(?:\.\d+)?)%\s+" + _TIME + r"\s*$", text, re.MULTILINE)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkResult(
        requests=requests,
        seconds=seconds,
        latency=latency,
        bad_status=int(bad.group(1)) if bad else 0,
        socket_errors=socket_errors,
    )


# --- backpain_bench -----------------------------------------------------------------------------


def parse_backpain_bench(text: str) -> dict[str, float]:
    """Median seconds per report of ``full render`` and ``cached path`` from the command's table."""
    found: dict[str, float] = {}
    for name in ("full render", "cached path", "write bytes"):
        match = re.search(rf"^{name}\s+([\d.]+)\s+([\d.]+)\s", text, re.MULTILINE)
        if match:
            found[name] = float(match.group(1))
    if "full render" not in found or "cached path" not in found:
        raise ValueError(f"no full render / cached path rows in backpain_bench's output:\n{text}")
    return found


# --- Rows, goals, ratios ------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """``ratio >= value`` (op ``">="``) or ``ratio <= value`` (op ``"<="``)."""

    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"a goal is >= or <=, not {self.op!r}")

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.value:g}x"


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline``; NaN when the baseline is zero (nothing to compare with)."""
    return ours / baseline if baseline else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    """One line of the results table: our figure and its baseline's, from the same run."""

    key: str
    path: str
    baseline_name: str
    unit: str
    goal: Goal | None
    ours: list[float] = field(default_factory=list)  # one figure per round
    baseline: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    valid: bool = True  # False when the run showed errors that make the figure meaningless

    @property
    def ours_figure(self) -> float:
        return median(self.ours)

    @property
    def baseline_figure(self) -> float:
        return median(self.baseline)

    @property
    def ratio(self) -> float:
        return ratio(self.ours_figure, self.baseline_figure)

    @property
    def measured(self) -> bool:
        return bool(self.ours) and bool(self.baseline)

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None without a goal, a measurement, or a valid run."""
        if self.goal is None or not self.measured or not self.valid or self.ratio != self.ratio:
            return None
        return self.goal.met(self.ratio)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": self.path,
            "baseline_name": self.baseline_name,
            "unit": self.unit,
            "goal": str(self.goal) if self.goal else None,
            "ours": self.ours,
            "baseline": self.baseline,
            "ratio": self.ratio if self.measured else None,
            "met": self.met,
            "valid": self.valid,
            "notes": self.notes,
        }


def figure(value: float, unit: str) -> str:
    """A figure with as many digits as it deserves, and its unit."""
    if value != value:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:,.{digits}f} {unit}"


def verdict(row: Row) -> str:
    met = row.met
    if not row.measured:
        return "not measured"
    if not row.valid:
        return "invalid run"
    if met is None:
        return "(no goal)"
    return "**met**" if met else "not met"


# --- RESULTS.md ---------------------------------------------------------------------------------


def results_markdown(
    rows: Iterable[Row],
    *,
    machine: Mapping[str, str],
    versions: Mapping[str, str],
    settings: Mapping[str, str],
    notes: Sequence[str] = (),
    details: Sequence[str] = (),
) -> str:
    """The whole of ``benchmarks/RESULTS.md``: the table, then machine, versions and details."""
    rows = list(rows)
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run.py`); see `benchmarks/README.md`. Each ratio is",
        "ours / baseline, both measured in this one run on the same stack.",
        "",
        "| path | baseline (same run) | baseline | ours | ratio | goal | goal met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratio_text = f"{row.ratio:.3f}x" if row.measured and row.ratio == row.ratio else "n/a"
        lines.append(
            f"| {row.path} | {row.baseline_name} | {figure(row.baseline_figure, row.unit)} | "
            f"{figure(row.ours_figure, row.unit)} | {ratio_text} | "
            f"{row.goal or '—'} | {verdict(row)} |"
        )
    lines += ["", "## Run", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += ["", "## Versions", ""]
    lines += [f"- {key}: {value}" for key, value in versions.items()]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in notes]
    per_row = [row for row in rows if row.notes or len(row.ours) > 1 or len(row.baseline) > 1]
    if per_row or details:
        lines += ["", "## Details", ""]
        for row in per_row:
            rounds = ", ".join(figure(v, row.unit) for v in row.ours)
            base_rounds = ", ".join(figure(v, row.unit) for v in row.baseline)
            lines.append(f"- **{row.path}**: ours {rounds}; baseline {base_rounds}")
            lines += [f"  - {note}" for note in row.notes]
        lines += [f"- {line}" for line in details]
    return "\n".join(lines) + "\n"


# --- Sections other scripts own -----------------------------------------------------------------


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section_get(text: str, name: str) -> str | None:
    """The section ``name`` of ``text`` (markers included), or None when it has none."""
    start, end = section_markers(name)
    first = text.find(start)
    last = text.find(end, first)
    if first == -1 or last == -1:
        return None
    return text[first : last + len(end)]


def section_put(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` set to ``body`` (replaced in place, else appended)."""
    start, end = section_markers(name)
    section = f"{start}\n{body.strip()}\n{end}"
    old = section_get(text, name)
    if old is not None:
        return text.replace(old, section)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def sections_carry(old_text: str, new_text: str, names: Iterable[str]) -> str:
    """``new_text`` with the sections of ``old_text`` named ``names`` kept (another script
    writes them: ``make bench`` rewrites RESULTS.md without losing them)."""
    for name in names:
        old = section_get(old_text, name)
        if old is not None:
            start, end = section_markers(name)
            new_text = section_put(new_text, name, old[len(start) : -len(end)])
    return new_text
