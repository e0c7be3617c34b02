"""The compatibility matrix: the unit tier on each supported Django x Python pair.

    nox                      every session (the whole matrix, docs "Compatibility")
    nox -t compat            the oldest pair at the lower bounds: ``make test-compat``
    nox -s "tests(django5.2-py3.10-lowest)"   one session; -R reuses its venv and skips the install

Each session installs ``.[test,example]`` into its own venv under ``.nox/`` (kept and reused: a
second run only checks that pip has nothing to do) and runs the unit tier, ``-m "not slow and not
services and not browser"``, with every warning an error (setup.cfg's ``filterwarnings = error``
and ``python -W error``). The Django 5.2 x Python 3.10 session installs every lower bound that
setup.cfg declares (``tools/lowest_requirements.py``): it is ``make test-compat``. The others get
the newest release of their Django series and of everything else.

The Pythons are found on PATH (``python3.10`` ...) or in pyenv's versions folder, so pyenv's
shims need no ``pyenv global``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
UNIT_TIER = "not slow and not services and not browser"

#: (Django series, Python, lowest pins?, tags): the matrix. Django 6 needs Python 3.12+.
MATRIX = [
    ("5.2", "3.10", True, ["compat"]),
    ("5.2", "3.12", False, []),
    ("6.0", "3.12", False, []),
    ("6.1", "3.12", False, []),
    ("6.1", "3.13", False, []),
]

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.sessions = ["tests"]


def _pyenv_bins() -> list[str]:
    """pyenv's ``versions/3.*/bin`` folders, newest patch release first."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")

    def key(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.parent.name.split(".") if part.isdigit())

    found = sorted(root.glob("versions/3.*/bin/python3"), key=key, reverse=True)
    return [str(path.parent) for path in found]


# Before pyenv's shims, which answer "command not found" for a version not made global.
os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


def _lowest_constraints(session: nox.Session) -> str:
    """Write the lower-bound constraints file into the session's tmp folder; its path."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import lowest_requirements
    finally:
        sys.path.remove(str(ROOT / "tools"))
    path = Path(session.create_tmp()) / "constraints-lowest.txt"
    path.write_text(lowest_requirements.constraints(ROOT / "setup.cfg"), encoding="utf-8")
    return str(path)


@nox.session
@nox.parametrize(
    ("django", "python", "lowest"),
    [
        nox.param(
            django,
            python,
            lowest,
            id=f"django{django}-py{python}{'-lowest' if lowest else ''}",
            tags=tags,
        )
        for django, python, lowest, tags in MATRIX
    ],
)
def tests(session: nox.Session, django: str, lowest: bool) -> None:
    """The unit tier on one Django x Python pair, warnings as errors."""
    pins = ["-c", _lowest_constraints(session)] if lowest else [f"Django~={django}.0"]
    session.install("-e", ".[test,example]", *pins)
    pytest = ["python", "-W", "error", "-m", "pytest", "-m", UNIT_TIER, "-p", "no:cacheprovider"]
    session.run(*pytest, *session.posargs)
