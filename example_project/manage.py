#!/usr/bin/env python
"""Django's command-line utility for the example site: ``python example_project/manage.py``."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    # Python puts this file's folder first on sys.path, where ``celery.py`` would shadow the
    # real celery package; the repository root (example_project + backpain_report) goes there.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
