"""Run ``backpain_bench`` without a site: ``python benchmarks/bench.py --renders 20``.

A thin wrapper: it configures Django with the test settings (or ``DJANGO_SETTINGS_MODULE``) and
calls the management command, which holds all the measuring code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    """Run the benchmark with ``argv`` as the command's arguments; return the exit status."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.core.management import CommandError, call_command

    django.setup()
    try:
        call_command("backpain_bench", *argv)
    except CommandError as exc:
        print(f"backpain_bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
