"""The retry policy in one place: what the sender, the tasks and the sweep ask it."""

from __future__ import annotations

import smtplib

from backpain_report import tasks
from backpain_report.delivery import retry


def test_a_5xx_answer_gives_up_at_once_and_a_4xx_one_backs_off(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "RETRY_BACKOFF": 10}
    permanent = retry.failure_decide(attempts=1, exc=smtplib.SMTPDataError(550, b"no"))
    assert permanent.give_up and permanent.retry_in is None
    assert permanent.error == "SMTP 550: no"
    temporary = retry.failure_decide(attempts=1, exc=smtplib.SMTPDataError(451, b"later"))
    assert not temporary.give_up and 5 <= temporary.retry_in <= 10


def test_connection_errors_are_temporary_and_drop_the_connection():
    decision = retry.failure_decide(attempts=1, exc=smtplib.SMTPServerDisconnected("gone"))
    assert not decision.give_up and decision.connection_lost
    assert not retry.failure_decide(attempts=1, exc=ValueError("x")).connection_lost


def test_the_last_attempt_gives_up_on_a_temporary_failure(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "MAX_ATTEMPTS": 3}
    assert not retry.failure_decide(attempts=2, exc=TimeoutError()).give_up
    assert retry.failure_decide(attempts=3, exc=TimeoutError()).give_up


def test_every_delivery_task_is_redelivered_when_its_worker_is_lost():
    for task in (tasks.deliver_report, tasks.deliver_batch, tasks.process_signup):
        assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
