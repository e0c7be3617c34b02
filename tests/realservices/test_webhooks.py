"""Webhook delivery on the real stack: the example site (DEBUG off, so the endpoint is
``https://``) posts to the test receiver (support/webhook_receiver.py) serving HTTPS with a
throw-away CA that the site's processes trust through ``SSL_CERT_FILE``.

The fault tier's site (support/faults_site.py: private PostgreSQL, the scripted SMTP server, a
Celery worker on the default queue and the webhook queue), once on its private Redis and once
on a private RabbitMQ node, each with an endpoint of its own. Every scenario checks the outbox
promise (:func:`_delivered`): each event row is accepted by the receiver at least once, every
request carries the id of a row of the same event, and no row ends failed or pending.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from .support.faults_site import ARTEFACTS, QUEUE, FaultSite, address, shared_site
from .support.gating import require_service, unavailable
from .support.processes import wait_until
from .support.services import PrivateRabbit
from .support.tls import TlsFiles, tls_files_make
from .support.webhook_receiver_client import Receiver

pytestmark = pytest.mark.services

WEBHOOK_QUEUE = f"{QUEUE}.webhooks"  # example_project/settings.py names it after the default
EVENT_TYPES = ("subscriber.created", "report.delivered")
READ_TIMEOUT = 2.0  # WEBHOOK_READ_TIMEOUT of the module's workers (seconds)
LEASE = 8.0  # CLAIM_LEASE: above the connect and read timeouts together, as a lease must be
HOOK_TIMINGS = {
    "BACKPAIN_CLAIM_LEASE": str(LEASE),
    "BACKPAIN_WEBHOOK_READ_TIMEOUT": str(READ_TIMEOUT),
    "BACKPAIN_WEBHOOK_CONNECT_TIMEOUT": "1",
    "BACKPAIN_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
}
WAIT = 60.0  # seconds for what is expected to arrive
SETTLE = 1.0  # seconds to wait after the last arrival, to see a repeat come

ENDPOINT_CREATE = """
import json, sys
import django
django.setup()
from backpain_report.models import WebhookEndpoint
from backpain_report.webhooks.endpoints import url_problem

url, secret, types = sys.argv[1:4]
WebhookEndpoint.objects.filter(is_active=True).update(is_active=False)
endpoint = WebhookEndpoint.objects.create(
    name="the test receiver", url=url, secret=secret, event_types=types
)
print(json.dumps({"id": endpoint.pk, "problem": url_problem(url)}))
"""

# argv[1]: the endpoint's id; switched off, so later tests' sign-ups queue nothing for it.
ENDPOINT_OFF = """
import sys
import django
django.setup()
from backpain_report.models import WebhookEndpoint

print(WebhookEndpoint.objects.filter(pk=int(sys.argv[1])).update(is_active=False))
"""


@dataclasses.dataclass
class Hooks:
    """What a test works with: the site, the receiver, the endpoint and the broker's name."""

    site: FaultSite
    receiver: Receiver
    endpoint_id: int
    broker: str
    rabbit: PrivateRabbit | None

    def events(self, emails: Iterable[str]) -> list[dict[str, Any]]:
        """The endpoint's event rows about the subscribers with these addresses."""
        assert self.site.database is not None
        return self.site.database.query(
            """
            SELECT e.id, e.webhook_id, e.event_type, e.status, e.attempts, e.body,
                   e.last_error, e.claimed_at, e.subscriber_ref, s.email_canonical AS email
            FROM backpain_report_webhookevent e
            JOIN backpain_report_subscriber s ON s.id = e.subscriber_ref
            WHERE s.email_canonical = ANY(%s) AND e.endpoint_id = %s
            ORDER BY e.id
            """,
            (list(emails), self.endpoint_id),
        )

    def wait_sent(self, emails: Iterable[str], *, timeout: float = WAIT) -> list[dict[str, Any]]:
        """The rows once every address has one of each type and all are final (sent, failed
        or cancelled); AssertionError if that does not happen within ``timeout``."""
        emails = list(emails)

        def settled() -> list[dict[str, Any]] | None:
            rows = self.events(emails)
            kinds = {(row["email"], row["event_type"]) for row in rows}
            done = all(row["status"] in ("sent", "failed", "cancelled") for row in rows)
            wanted = {(email, kind) for email in emails for kind in EVENT_TYPES}
            return rows if done and wanted <= kinds else None

        rows = wait_until(settled, timeout=timeout, interval=0.2)
        assert rows, f"events not all settled within {timeout} s: {self.explain(emails)}"
        time.sleep(SETTLE)
        return self.events(emails)

    def explain(self, emails: Iterable[str]) -> str:
        emails = list(emails)
        rows = [{k: v for k, v in row.items() if k != "body"} for row in self.events(emails)]
        records = [{k: v for k, v in r.items() if k != "body"} for r in self.receiver.records()]
        return (
            f"[{self.broker}] rows: {rows}\nreceiver records: {records[-20:]}\n"
            f"{self.site.explain(emails)}"
        )


def _secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files_make(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture(scope="module")
def receiver(tls: TlsFiles) -> Iterator[Receiver]:
    with Receiver(_secret_new(), tls=tls) as receiver:
        yield receiver


@pytest.fixture(scope="module", params=["redis", "amqp"])
def hooks_module(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls: TlsFiles,
    receiver: Receiver,
) -> Iterator[Hooks]:
    """The fault site on ``redis`` (its private Redis) or ``amqp`` (a private RabbitMQ node),
    its processes trusting the receiver's CA, with an endpoint of its own for the receiver."""
    site = shared_site(request, tmp_path_factory)
    rabbit = None
    if request.param == "amqp":
        require_service("amqp")  # the RabbitMQ side of the tier is on
        problem = PrivateRabbit.available()
        if problem:
            unavailable(f"webhooks on RabbitMQ: {problem}")
        rabbit = PrivateRabbit(log_dir=ARTEFACTS / "rabbitmq")
        rabbit.start()
        site.broker_url = rabbit.url()
    site.extra_env = {"SSL_CERT_FILE": str(tls.ca), **HOOK_TIMINGS}
    site.worker_stop()  # the next prepare() starts one with this environment
    made: dict[str, Any] = {}
    try:
        made = site.django(ENDPOINT_CREATE, receiver.url, receiver.secret, " ".join(EVENT_TYPES))
        assert made["problem"] is None, made
        yield Hooks(site, receiver, made["id"], request.param, rabbit)
    finally:
        site.worker_stop()
        if made:
            site.django(ENDPOINT_OFF, str(made["id"]))
        site.broker_url, site.extra_env = None, {}
        if rabbit is not None:
            rabbit.remove()


@pytest.fixture
def hooks(hooks_module: Hooks, request: pytest.FixtureRequest) -> Iterator[Hooks]:
    site = hooks_module.site
    site.prepare(request.node.name)
    site.redis.delete(WEBHOOK_QUEUE)
    hooks_module.receiver.reset()
    yield hooks_module
    hooks_module.receiver.reset()
    site.finish()
    site.redis.delete(WEBHOOK_QUEUE)
    assert site.database is not None
    if site.postgres.accepts():
        site.database.query(
            "UPDATE backpain_report_webhookevent SET status = 'cancelled', "
            "last_error = 'left over by a webhook test' WHERE status IN ('pending', 'sending')"
        )


def _delivered(
    hooks: Hooks,
    emails: Iterable[str],
    *,
    read_timeout: float = READ_TIMEOUT,
    not_ours: Iterable[str] = (),
) -> dict[str, int]:
    """Assert the outbox promise for these addresses' events (see the module docstring); the
    numbers of events and of requests made for them.

    A request counts as accepted when it was verified and answered 2xx within
    ``read_timeout`` (a held-back answer the sender waited for counts; one it gave up on not).
    ``not_ours``: ids of requests a test made itself, left out.
    """
    emails = list(emails)
    rows = hooks.wait_sent(emails)
    explain = hooks.explain(emails)
    by_id = {row["webhook_id"]: row for row in rows}
    by_subscriber = {row["subscriber_ref"] for row in rows}
    kinds = [(row["email"], row["event_type"]) for row in rows]
    assert len(kinds) == len(set(kinds)), f"an event recorded twice: {explain}"
    assert {row["status"] for row in rows} == {"sent"}, f"not all sent: {explain}"
    skipped = set(not_ours)
    ours = [record for record in hooks.receiver.records() if record["webhook_id"] not in skipped]
    ours = [
        record
        for record in ours
        if record["webhook_id"] in by_id
        or (record["body"] or {}).get("data", {}).get("subscriber", {}).get("id") in by_subscriber
    ]
    accepted = {
        record["webhook_id"]
        for record in ours
        if record["verified"]
        and 200 <= record["status"] < 300
        and record["hang_seconds"] < read_timeout
    }
    assert set(by_id) <= accepted, f"not accepted: {sorted(set(by_id) - accepted)}\n{explain}"
    for record in ours:
        assert record["verified"], f"refused: {record}\n{explain}"
        row = by_id.get(record["webhook_id"])
        assert row is not None, f"a request with an id of no event row: {record}\n{explain}"
        assert record["body"] == json.loads(row["body"]), f"another body: {record}\n{explain}"
        assert record["body"]["type"] == row["event_type"], record
    result = {"events": len(rows), "requests": len(ours), "repeats": len(ours) - len(rows)}
    print(f"WEBHOOK-RESULT [{hooks.broker}] " + " ".join(f"{k}={v}" for k, v in result.items()))
    return result


def _requests_for(hooks: Hooks, webhook_id: str) -> list[dict[str, Any]]:
    return [record for record in hooks.receiver.records() if record["webhook_id"] == webhook_id]


def _first_request(hooks: Hooks, emails: Iterable[str], *, timeout: float = WAIT) -> dict:
    """The first request about one of these addresses' events (an event row must exist)."""
    emails = list(emails)

    def found() -> dict | None:
        ids = {row["webhook_id"] for row in hooks.events(emails)}
        mine = [r for r in hooks.receiver.records() if r["webhook_id"] in ids]
        return mine[0] if mine else None

    record = wait_until(found, timeout=timeout, interval=0.05)
    assert record, f"no request came: {hooks.explain(emails)}"
    return record  # type: ignore[return-value]


def test_signups_reach_the_receiver_signed(hooks: Hooks) -> None:
    """Three sign-ups: each one's ``subscriber.created`` and ``report.delivered`` arrive over
    HTTPS, verified by the receiver, at the first attempt."""
    emails = [address(f"hook-{i}") for i in range(3)]
    hooks.site.signup(*[(f"Hook Reader {i}", email) for i, email in enumerate(emails)])
    hooks.site.wait_delivered(emails, timeout=WAIT)
    result = _delivered(hooks, emails)
    assert result == {"events": 6, "requests": 6, "repeats": 0}, hooks.explain(emails)
    assert [row["attempts"] for row in hooks.events(emails)] == [1] * 6


def test_a_500_is_retried_with_the_same_webhook_id(hooks: Hooks) -> None:
    """The receiver answers 500 once, then 200: the event arrives at the second attempt, with
    the same ``webhook-id``; nothing is lost."""
    email = address("hook-500")
    hooks.receiver.fail_next(1, status=500)
    hooks.site.signup(("Five Hundred", email))
    first = _first_request(hooks, [email])
    _delivered(hooks, [email])
    assert first["status"] == 500, first
    tries = _requests_for(hooks, first["webhook_id"])
    assert [r["status"] for r in tries] == [500, 200], tries
    [row] = [r for r in hooks.events([email]) if r["webhook_id"] == first["webhook_id"]]
    assert row["attempts"] == 2, hooks.explain([email])


def test_a_receiver_that_hangs_past_the_read_timeout_is_retried(hooks: Hooks) -> None:
    """The receiver holds its first answer back longer than ``WEBHOOK_READ_TIMEOUT`` (2 s):
    the worker gives up on it and retries; the repeat (same id) is accepted."""
    email = address("hook-hang")
    hooks.receiver.hang_next(1, seconds=READ_TIMEOUT + 4)
    hooks.site.signup(("Hung Receiver", email))
    first = _first_request(hooks, [email])
    _delivered(hooks, [email])
    assert first["hang_seconds"] > READ_TIMEOUT, first
    tries = _requests_for(hooks, first["webhook_id"])
    assert len(tries) == 2 and tries[1]["hang_seconds"] == 0, tries
    waited = tries[1]["received_monotonic"] - tries[0]["received_monotonic"]
    assert waited >= READ_TIMEOUT, f"retried after {waited:.2f} s, before the read timeout"


def test_a_worker_killed_mid_call_is_recovered_by_the_sweep(hooks: Hooks) -> None:
    """The worker (main process and pool) is SIGKILLed while the receiver holds its request
    (within the read timeout: the call is under way); a new worker starts; once the claim lease
    (8 s) has passed, one ``backpain_sweep`` run re-publishes the event, which arrives with the
    same id (attempts 2)."""
    site = hooks.site
    email = address("hook-killed")
    hooks.receiver.hang_next(1, seconds=60)
    site.signup(("Killed Mid Call", email))
    held = _first_request(hooks, [email])
    site.worker_kill()
    hooks.receiver.reset()
    [row] = [r for r in hooks.events([email]) if r["webhook_id"] == held["webhook_id"]]
    assert row["status"] == "sending", f"the call was over before the kill: {row}"

    site.worker_start()
    claimed = row["claimed_at"].timestamp()
    time.sleep(max(0.0, LEASE + 0.5 - (time.time() - claimed)))
    output = site.sweep()
    swept = re.search(r"(\d+) stranded webhook events found, (\d+) re-enqueued", output)
    assert swept and int(swept[2]) >= 1, output
    site.wait_delivered([email], timeout=WAIT)
    _delivered(hooks, [email])
    tries = _requests_for(hooks, held["webhook_id"])
    assert len(tries) == 2 and tries[1]["hang_seconds"] == 0, tries
    [row] = [r for r in hooks.events([email]) if r["webhook_id"] == held["webhook_id"]]
    assert row["attempts"] == 2, f"sweep: {output}\n{hooks.explain([email])}"


def test_events_pending_across_a_broker_restart_all_arrive(hooks: Hooks) -> None:
    """With the worker stopped, three sign-ups queue their events; the broker is restarted
    (Redis keeps nothing, RabbitMQ keeps its durable queues); a worker starts and, after
    SWEEP_GRACE, one ``backpain_sweep`` run: every event arrives."""
    site = hooks.site
    emails = [address(f"hook-restart-{i}") for i in range(3)]
    site.worker_stop()
    site.signup(*[(f"Restart Reader {i}", email) for i, email in enumerate(emails)])
    if hooks.rabbit is not None:
        hooks.rabbit.restart()
    else:
        site.redis.stop()
        site.redis.start()
    site.worker_start()
    time.sleep(2.5)  # SWEEP_GRACE (2 s) since the rows were enqueued
    output = site.sweep()
    site.wait_delivered(emails, timeout=WAIT)
    result = _delivered(hooks, emails)
    assert result["events"] == 6, f"sweep: {output}\n{hooks.explain(emails)}"
    print(f"[{hooks.broker}] sweep after the restart: {output!r}")


def test_a_tampered_or_expired_signature_is_refused(hooks: Hooks, tls: TlsFiles) -> None:
    """An event body the site wrote, signed with the endpoint's secret, is accepted over HTTPS;
    the same with one byte changed, signed six minutes ago, or signed with another secret is
    refused (401) and counts as no delivery."""
    email = address("hook-forged")
    hooks.site.signup(("Forged Signature", email))
    [row] = [r for r in hooks.events([email]) if r["event_type"] == "subscriber.created"]
    body = row["body"].encode()
    forged: list[str] = []

    def post(data: bytes, *, secret: str = hooks.receiver.secret, age: float = 0) -> int:
        msg_id = f"msg_forged{secrets.token_hex(8)}"
        forged.append(msg_id)
        moment = datetime.fromtimestamp(time.time() - age, timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        }
        request = urllib.request.Request(hooks.receiver.url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5, context=tls.client_context()) as r:
                return r.status
        except urllib.error.HTTPError as error:
            error.close()
            return error.code

    tampered = body.replace(b'"subscriber.created"', b'"subscriber.erased"')
    assert tampered != body
    assert post(body) == 200
    assert post(tampered) == 401
    assert post(body, age=360) == 401
    assert post(body, secret=_secret_new()) == 401
    refused = [r for r in hooks.receiver.records()[-3:] if not r["verified"]]
    assert len(refused) == 3, refused
    assert all(r["status"] == 401 and r["reason"] for r in refused), refused
    _delivered(hooks, [email], not_ours=forged)  # the site's own, untouched by the forgeries


def test_a_hanging_receiver_does_not_hold_up_report_emails(hooks: Hooks) -> None:
    """While the receiver holds one webhook call for 10 s (the worker's read timeout is 14 s,
    so it waits), another reader's report email still arrives within a few seconds of the
    sign-up's commit: webhook calls have a queue of their own and take one pool process, not
    the worker (both pool processes held by hanging calls would hold it up)."""
    site = hooks.site
    hang, read_timeout = 10.0, 14.0
    site.worker_start(BACKPAIN_WEBHOOK_READ_TIMEOUT=read_timeout)
    hung, other = address("hook-held"), address("hook-other")
    hooks.receiver.hang_next(1, seconds=hang)
    site.signup(("Held Call", hung))
    held = _first_request(hooks, [hung])
    site.signup(("Report Reader", other))
    committed = time.monotonic()
    site.wait_delivered([other], timeout=WAIT)
    took = time.monotonic() - committed
    still_held = time.monotonic() - held["received_monotonic"] < hang
    print(f"[{hooks.broker}] a report email arrived {took:.2f} s after its sign-up, the call held")
    assert still_held, f"the email took {took:.2f} s: the held call was over first"
    assert took < 8, f"the report email took {took:.2f} s\n{hooks.explain([hung, other])}"
    _delivered(hooks, [hung, other], read_timeout=read_timeout)
