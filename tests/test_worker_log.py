"""What the worker logs: one line per message sent, and none of WeasyPrint's render chatter."""

from __future__ import annotations

import logging
import re

import pytest
from django.core import mail

from backpain_report.delivery import logs
from backpain_report.models import Delivery
from backpain_report.tasks import deliver_report

SENDING = "backpain_report.delivery.sending"


def _sent_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SENDING and r.levelname == "INFO"]


def test_a_delivery_logs_one_line_with_the_address_masked(
    make_subscriber, make_delivery, caplog, settings
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}
    subscriber = make_subscriber(email="maria.lopez@example.com", name="Maria Lopez")
    delivery = make_delivery(subscriber=subscriber)
    with caplog.at_level(logging.DEBUG):  # even with everything on, one line per delivery
        assert deliver_report(delivery.pk) == "sent"
    assert len(mail.outbox) == 1 and mail.outbox[0].attachments  # a real render and send
    [line] = _sent_lines(caplog)
    assert re.fullmatch(rf"sent report {delivery.pk} to m…@example\.com in \d+\.\d\d s", line)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "maria.lopez" not in everything and "Maria Lopez" not in everything
    # WeasyPrint's "Step 1 - Fetching and parsing HTML" ... and fontTools' subsetting lines: off.
    chatter = [r for r in caplog.records if r.name.startswith(("weasyprint", "fontTools"))]
    assert not chatter, [r.getMessage() for r in chatter]


def test_a_confirmation_email_says_so(make_delivery, caplog):
    delivery = make_delivery(kind=Delivery.Kind.CONFIRMATION)
    with caplog.at_level(logging.INFO):
        assert deliver_report(delivery.pk) == "sent"
    [line] = _sent_lines(caplog)
    assert re.fullmatch(
        rf"sent confirmation request {delivery.pk} to r…@example\.com in \d+\.\d\d s", line
    )


def test_nothing_sent_logs_no_sent_line(make_delivery, caplog):
    delivery = make_delivery(status=Delivery.Status.SENT)
    with caplog.at_level(logging.INFO):
        assert deliver_report(delivery.pk) == "skipped"
    assert _sent_lines(caplog) == []


@pytest.fixture
def chatty_loggers_unset():
    """The chatty loggers as a site that configured nothing has them before the app is ready."""
    saved = {name: logging.getLogger(name).level for name in logs.CHATTY_LOGGERS}
    for name in saved:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_the_app_quiets_weasyprint_and_fonttools_by_default(chatty_loggers_unset):
    # WeasyPrint's own logger is left as WeasyPrint has it (68 sets WARNING on import, 70 not):
    # its warnings and errors still show.
    weasyprint_level = logging.getLogger("weasyprint").level
    assert logs.loggers_quiet({"version": 1}) == ["weasyprint.progress", "fontTools"]
    assert logging.getLogger("weasyprint.progress").level == logging.WARNING
    assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
    assert logging.getLogger("weasyprint").level == weasyprint_level


@pytest.mark.parametrize(
    ("configured", "left_alone"),
    [
        ({"weasyprint.progress": {"level": "INFO"}}, "weasyprint.progress"),
        ({"weasyprint": {"level": "DEBUG"}}, "weasyprint.progress"),  # a parent counts
        ({"fontTools.subset": {"level": "INFO"}}, None),  # a child does not: fontTools is quieted
        ({"fontTools": {"level": "INFO"}}, "fontTools"),
    ],
)
def test_loggers_the_site_configured_are_left_alone(chatty_loggers_unset, configured, left_alone):
    quieted = logs.loggers_quiet({"version": 1, "loggers": configured})
    assert quieted == [name for name in logs.CHATTY_LOGGERS if name != left_alone]
    if left_alone:
        assert logging.getLogger(left_alone).level == logging.NOTSET


def test_a_level_set_in_code_is_left_alone(chatty_loggers_unset):
    logging.getLogger("weasyprint.progress").setLevel(logging.INFO)
    assert logs.loggers_quiet(None) == ["fontTools"]
    assert logging.getLogger("weasyprint.progress").level == logging.INFO


def test_with_the_site_asking_for_them_the_steps_show(chatty_loggers_unset, make_delivery, caplog):
    """The default above is what hides them: a site that asks sees WeasyPrint's steps."""
    logging.getLogger("weasyprint.progress").setLevel(logging.INFO)
    with caplog.at_level(logging.INFO):
        assert deliver_report(make_delivery().pk) == "sent"
    steps = [r.getMessage() for r in caplog.records if r.name == "weasyprint.progress"]
    assert any(step.startswith("Step 1") for step in steps)
