"""``backpain_bench`` runs without database rows and prints the table and the ratios."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError, call_command

from backpain_report.report import pdfcache

# Seconds a test: the bench command over hundreds of requests; `make test-fast` skips it.
pytestmark = pytest.mark.heavy


def test_bench_prints_each_path_and_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    call_command(
        "backpain_bench", "--renders", "2", "--traced-renders", "1",
        "--memory-renders", "2", "--memory-every", "1",
    )  # fmt: skip
    out = capsys.readouterr().out
    for path in ("full render", "cached path", "write bytes"):
        assert re.search(rf"^{path}\s+\d+\.\d+\s+\d+\.\d+\s", out, re.MULTILINE), path
    assert re.search(r"cached path: \d\.\d+x of a full render", out)
    assert "CPUs" in out
    assert re.search(r"after 2: [\d.]+", out)
    assert not pdfcache._memory  # the bench leaves no body behind in memory


def test_bench_fails_above_the_ratio_asked_for() -> None:
    with pytest.raises(CommandError, match=r"above 0\.0001x"):
        call_command(
            "backpain_bench", "--renders", "1", "--traced-renders", "0", "--max-ratio", "0.0001"
        )


def test_bench_rejects_bad_arguments() -> None:
    with pytest.raises(CommandError, match="--renders"):
        call_command("backpain_bench", "--renders", "0")
