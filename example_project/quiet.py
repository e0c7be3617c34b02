"""A logging filter that keeps the example's console quiet while nothing happens."""

from __future__ import annotations

import logging


class TaskRunsHidden(logging.Filter):
    """Drops Celery's INFO lines about each run of one task: beat's "Sending due task", the
    worker's "received" and "succeeded". Its warnings and errors, and what the task logs
    itself, still show.

    The example hides the periodic sweep's (every minute): the sweep logs a line of its own
    when it re-published something.
    """

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = task

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return self.task not in record.getMessage()
