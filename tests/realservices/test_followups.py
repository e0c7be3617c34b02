"""Follow-up sequences on the real stack: the fault tier's site (support/faults_site.py: private
PostgreSQL, the scripted SMTP server, a Celery worker, gunicorn), once on its private Redis and
once on a private RabbitMQ node.

The bundled sequence is turned on, readers sign up through the site's form (its consent names
the follow-ups and the form carries ``followups=1``), the report goes out, and the scheduler is
run as of later moments with ``manage.py backpain_followups --as-of`` (the development clock,
so those processes run with ``DJANGO_DEBUG=1``; the web and the worker keep DEBUG off). Each
step arrives once with the unsubscribe link and the RFC 8058 headers; an unsubscribed reader
gets no further step; two schedulers at once make no doubles; a worker killed mid-send of a
follow-up leaves it to the sweep, which sends it (at least once, with one Message-ID).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from .support.faults_site import ARTEFACTS, FaultSite, Reader, address, shared_site
from .support.gating import require_service, unavailable
from .support.processes import wait_until
from .support.services import PrivateRabbit
from .support.stack import manage
from .support.web import SIGNUP_PATH, Client, signup_data

pytestmark = pytest.mark.services

WAIT = 60.0  # seconds for what is expected to arrive
SETTLE = 1.0  # seconds to wait after the last arrival, to see a repeat come
LEASE = 5.0  # CLAIM_LEASE of the module's workers (the worker-killed test waits it out)

# Turns the bundled sequence of the default article's report on (argv[1] "1") or off ("0").
# Prints the active English steps: [{"id", "position", "delay_days", "subject"}].
SEQUENCE_SWITCH = """
import json, sys
import django
django.setup()
from backpain_report import selectors
from backpain_report.services.content import followups_seed

report = selectors.article_default().report
followups_seed(report=report)
report.followups_enabled = sys.argv[1] == "1"
report.save()
steps = report.followup_steps.filter(is_active=True, language="en").order_by("position")
print(json.dumps([
    {"id": s.pk, "position": s.position, "delay_days": s.delay_days, "subject": s.subject}
    for s in steps
]))
"""


@dataclasses.dataclass
class Sequence:
    """What a test works with: the site (web started), its broker's name and the steps."""

    site: FaultSite
    broker: str
    steps: list[dict[str, Any]]

    def signup(self, email: str) -> None:
        """Sign up over HTTP as the page's form does, agreeing to the follow-ups it names."""
        reader = Reader(self.site.base_url)
        assert reader.inputs.get("followups") == "1", (
            f"the article's form does not offer the follow-ups: {reader.inputs}"
        )
        data = {**signup_data(reader.inputs, name="Follow Up", email=email), "followups": "1"}
        response = reader.client.post(SIGNUP_PATH, data)
        assert response.status == 303, response.status

    def schedule(self, as_of: datetime.datetime) -> int:
        """``manage.py backpain_followups --as-of``; how many it scheduled."""
        out = manage(
            self.site.env(DJANGO_DEBUG="1"), "backpain_followups", "--as-of", as_of.isoformat()
        )
        found = re.search(r"Follow-ups: (\d+) scheduled", out)
        assert found, out
        return int(found.group(1))

    def report_sent_at(self, email: str) -> datetime.datetime:
        def sent() -> list[dict[str, Any]]:  # the row is marked just after the SMTP answer
            return [r for r in self.site.rows([email]) if r["sent_at"] is not None]

        assert wait_until(sent, timeout=WAIT), self.site.explain([email])
        return sent()[0]["sent_at"]

    def followups(self, emails: list[str]) -> list[dict[str, Any]]:
        assert self.site.database is not None
        return self.site.database.query(
            """
            SELECT d.id, d.status, d.attempts, d.message_id, d.step_id, d.claimed_at,
                   d.sent_at, s.email_canonical AS email
            FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE s.email_canonical = ANY(%s) AND d.kind = 'followup'
            ORDER BY d.id
            """,
            (emails,),
        )

    def wait_messages(self, email: str, count: int) -> list:
        """The messages to ``email`` once there are ``count`` (AssertionError if not)."""
        got = self.site.smtp.sink.wait_for_count({email}, count, WAIT)
        mine = [m for m in got if email in m.rcpt_tos]
        assert len(mine) >= count, f"{len(mine)} of {count}\n{self.explain([email])}"
        return mine

    def explain(self, emails: list[str]) -> str:
        return f"[{self.broker}] follow-ups: {self.followups(emails)}\n{self.site.explain(emails)}"


def _step_email_check(message, step: dict[str, Any]) -> str:
    """Assert the follow-up email is the step's, with the unsubscribe link and RFC 8058
    headers; return its List-Unsubscribe URL."""
    mail = message.message
    assert mail["Subject"] == step["subject"], (mail["Subject"], step["subject"])
    header = str(mail["List-Unsubscribe"] or "")
    found = re.search(r"<(https?://[^>]+)>", header)
    assert found, f"no List-Unsubscribe URL: {header!r}"
    assert str(mail["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    url = found.group(1)
    # The visible link is the unsubscribe page of the same signed token (the header's URL is
    # its one-click endpoint).
    page = urlsplit(url).path.removesuffix("one-click/")
    assert page.startswith("/unsubscribe/"), url
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            text = part.get_content()
            assert page in text, f"no unsubscribe link in the {part.get_content_type()}"
    return url


@pytest.fixture(scope="module", params=["redis", "amqp"])
def sequence_module(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sequence]:
    """The fault site on ``redis`` or ``amqp`` with the bundled sequence on, gunicorn started
    (so the worker's links point at it)."""
    site = shared_site(request, tmp_path_factory)
    rabbit = None
    if request.param == "amqp":
        require_service("amqp")
        problem = PrivateRabbit.available()
        if problem:
            unavailable(f"follow-ups on RabbitMQ: {problem}")
        rabbit = PrivateRabbit(log_dir=ARTEFACTS / "rabbitmq")
        rabbit.start()
        site.broker_url = rabbit.url()
    # A short lease for every worker of the module: the killed worker's claim expires soon.
    site.extra_env = {"BACKPAIN_CLAIM_LEASE": str(LEASE)}
    try:
        steps = site.django(SEQUENCE_SWITCH, "1")
        # A fresh web on this module's broker, started after the switch: on RabbitMQ the site's
        # cache is not the broker's Redis, and a page kept from before would offer no follow-ups.
        if site.web is not None:
            site.web.stop()
        site.web_start()
        site.worker_stop()  # the next prepare() starts one with the site's address
        assert len(steps) >= 3, steps
        yield Sequence(site, request.param, steps)
    finally:
        site.django(SEQUENCE_SWITCH, "0")
        site.worker_stop()
        if site.web is not None:
            site.web.stop()
        site.broker_url, site.extra_env = None, {}
        if rabbit is not None:
            rabbit.remove()


@pytest.fixture
def seq(sequence_module: Sequence, request: pytest.FixtureRequest) -> Iterator[Sequence]:
    sequence_module.site.prepare(request.node.name)
    yield sequence_module
    sequence_module.site.finish()


def _as_of(sent_at: datetime.datetime, step: dict[str, Any]) -> datetime.datetime:
    """A moment the day after ``step`` fell due for a report sent at ``sent_at``."""
    return sent_at + datetime.timedelta(days=step["delay_days"] + 1)


def test_each_step_arrives_once_with_the_unsubscribe_link(seq: Sequence):
    email = address("fu-steps")
    seq.signup(email)
    seq.wait_messages(email, 1)
    sent_at = seq.report_sent_at(email)
    for number, step in enumerate(seq.steps, start=1):
        later = seq.steps[number:]
        assert not later or later[0]["delay_days"] > step["delay_days"] + 1
        assert seq.schedule(_as_of(sent_at, step)) >= 1, seq.explain([email])
        newest = seq.wait_messages(email, 1 + number)[-1]
        _step_email_check(newest, step)
    assert seq.schedule(_as_of(sent_at, seq.steps[-1])) == 0  # nothing left to schedule
    time.sleep(SETTLE)
    subjects = [m.message["Subject"] for m in seq.site.smtp.sink.to(email)]
    assert subjects[1:] == [step["subject"] for step in seq.steps], subjects
    rows = seq.followups([email])
    assert [(r["step_id"], r["status"]) for r in rows] == [(s["id"], "sent") for s in seq.steps]


def test_two_schedulers_at_once_then_an_unsubscribed_reader_gets_no_further_step(seq: Sequence):
    """Step one is scheduled by two processes at once (as two beat hosts would): each reader
    gets it once. One reader then unsubscribes with the RFC 8058 one-click POST (at the web
    process, as a mailbox provider does) and gets no step after it; the other does."""
    leaving, staying = address("fu-leaving"), address("fu-staying")
    emails = [leaving, staying]
    for email in emails:
        seq.signup(email)
    seq.site.wait_delivered(emails, timeout=WAIT)
    first, second = seq.steps[0], seq.steps[1]
    sent_at = max(seq.report_sent_at(email) for email in emails)
    as_of = _as_of(sent_at, first)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(seq.schedule, [as_of, as_of]))
    assert sum(counts) == len(emails), counts
    url = _step_email_check(seq.wait_messages(leaving, 2)[-1], first)
    _step_email_check(seq.wait_messages(staying, 2)[-1], first)
    parts = urlsplit(url)
    response = Client(seq.site.base_url).post(
        f"{parts.path}?{parts.query}" if parts.query else parts.path,
        {"List-Unsubscribe": "One-Click"},
    )
    assert response.status == 200, (response.status, response.body)

    assert seq.schedule(_as_of(sent_at, second)) >= 1  # earlier tests' readers may be due too
    _step_email_check(seq.wait_messages(staying, 3)[-1], second)
    time.sleep(SETTLE)
    assert len(seq.site.smtp.sink.to(leaving)) == 2, seq.explain([leaving])
    assert len(seq.site.smtp.sink.to(staying)) == 3, seq.explain([staying])
    steps_of = {(r["email"], r["step_id"]) for r in seq.followups(emails)}
    assert steps_of == {(leaving, first["id"]), (staying, first["id"]), (staying, second["id"])}


def _wait_followup_sending(seq: Sequence, email: str, timeout: float) -> int | None:
    """Poll (every 10 ms) until the address's follow-up delivery is ``sending``; its id."""
    deadline = time.monotonic() + timeout
    assert seq.site.database is not None
    with psycopg.connect(seq.site.database.url, autocommit=True, connect_timeout=5) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT d.id FROM backpain_report_delivery d "
                "JOIN backpain_report_subscriber s ON s.id = d.subscriber_id "
                "WHERE s.email_canonical = %s AND d.kind = 'followup' AND d.status = 'sending'",
                (email,),
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.01)
    return None


def test_worker_killed_mid_send_of_a_followup(seq: Sequence):
    """The worker is SIGKILLed once the follow-up's row turns ``sending`` (the SMTP server
    holds its greeting 2 s, so the kill lands before anything is transmitted); after the lease
    a sweep hands it to a new worker, and it arrives, with one Message-ID however often."""
    site, email = seq.site, address("fu-killed")
    seq.signup(email)
    seq.wait_messages(email, 1)
    site.smtp.delay_greeting(2.0)
    seq.schedule(_as_of(seq.report_sent_at(email), seq.steps[0]))
    claimed = _wait_followup_sending(seq, email, WAIT)
    assert claimed, f"the follow-up never turned 'sending'\n{seq.explain([email])}"
    site.worker_kill()
    assert len(site.smtp.sink.to(email)) == 1, "sent before the kill: no fault happened"
    site.smtp.reset()
    site.worker_start()  # with the module's lease
    [row] = seq.followups([email])
    time.sleep(max(0.0, LEASE + 0.5 - (time.time() - row["claimed_at"].timestamp())))
    swept = site.sweep(BACKPAIN_CLAIM_LEASE=LEASE)
    mine = seq.wait_messages(email, 2)[1:]
    time.sleep(SETTLE)
    mine = site.smtp.sink.to(email)[1:]
    _step_email_check(mine[0], seq.steps[0])
    [row] = seq.followups([email])
    assert row["status"] == "sent", f"{swept}\n{seq.explain([email])}"
    assert {m.message_id for m in mine} == {row["message_id"]}, [m.message_id for m in mine]
    print(f"[{seq.broker}] follow-up sent {len(mine)} time(s) after the kill; sweep: {swept!r}")
