#!/usr/bin/env python3
"""Print a pip constraints file pinning every ``install_requires`` entry, and every entry of the
integration extras (``anymail``, ``wagtail``), to its lower bound.

    python tools/lowest_requirements.py [setup.cfg] > constraints.txt
    pip install -c constraints.txt -e .

``make test-compat`` uses it so the oldest supported stack really is what the declared lower
bounds promise: ``weasyprint>=68,<71`` becomes ``weasyprint==68``. Standard library only (it runs
before anything is installed). An entry without a ``>=`` bound is an error: every dependency
must say how old it may be.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"
#: Extras that integrate with another framework: tested at their lower bounds too (the test
#: extra installs them).
INTEGRATION_EXTRAS = ("anymail", "wagtail")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def install_requires(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """The ``[options] install_requires`` lines of ``setup_cfg``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    lines = parser.get("options", "install_requires", fallback="").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def integration_requires(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """The lines of the :data:`INTEGRATION_EXTRAS` in ``setup_cfg``'s ``extras_require``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    lines: list[str] = []
    for extra in INTEGRATION_EXTRAS:
        lines += parser.get("options.extras_require", extra, fallback="").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def lower_bound(requirement: str) -> tuple[str, str]:
    """``("weasyprint", "68")`` for ``"weasyprint>=68,<71"``; ValueError without a ``>=``."""
    match = _REQUIREMENT.match(requirement.split(";")[0])
    if not match:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    name, _extras, specifiers = match.groups()
    bounds = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(bounds) != 1:
        raise ValueError(f"{requirement!r} needs exactly one '>=' lower bound")
    return name, bounds[0]


def constraints(setup_cfg: Path = SETUP_CFG) -> str:
    """The constraints file: one ``name==lowest`` line per ``install_requires`` entry and per
    integration extra's entry."""
    requirements = install_requires(setup_cfg) + integration_requires(setup_cfg)
    pins = [lower_bound(requirement) for requirement in requirements]
    return "".join(f"{name}=={version}\n" for name, version in pins)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else SETUP_CFG
    try:
        sys.stdout.write(constraints(path))
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
