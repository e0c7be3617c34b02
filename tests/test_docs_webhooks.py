"""The webhook docs keep their promises (issue 24, point 6): the receiver a reader copies from
docs/howto/webhooks.md accepts what the app really signs and refuses a tampered body; the
example payloads of docs/reference/webhook-events.md are what the app really sends; every
event type and every ``WEBHOOK_*`` setting is documented; the guarantee is stated as the code
keeps it."""

from __future__ import annotations

import datetime
import io
import json
import re
import shutil
import subprocess
from typing import Any

import pytest
from django.utils import timezone

from backpain_report.config.schema import SETTINGS
from backpain_report.delivery.webhooks import signed_headers
from backpain_report.models import Article, Report, Subscriber, WebhookEndpoint, WebhookEvent
from backpain_report.seed import ARTICLE_SLUG, REPORT_SLUG, REPORT_TITLE
from backpain_report.webhooks import outbox
from backpain_report.webhooks.endpoints import secret_new
from backpain_report.webhooks.events import (
    SUBSCRIBABLE,
    EventType,
    body_encode,
    payload_build,
)
from backpain_report.webhooks.outbox import webhook_id_new

from .docs_text import ROOT, docs_page, docs_pages, docs_section

HOWTO = "howto/webhooks"
REFERENCE = "reference/webhook-events"

# --- the receiver of the how-to --------------------------------------------------------------


def code_block(markdown: str, language: str, marker: str) -> str:
    """The ``language`` code block of ``markdown`` that contains ``marker``."""
    found = [
        block
        for block in re.findall(rf"^```{language}\n(.*?)^```$", markdown, re.DOTALL | re.MULTILINE)
        if marker in block
    ]
    assert len(found) == 1, f"{len(found)} {language} blocks hold {marker!r}"
    return found[0]


@pytest.fixture
def receiver(tmp_path, monkeypatch):
    """The how-to's WSGI receiver, run from its own text, with a secret the app made, its
    deduplication table in ``tmp_path`` and the handling of a lead recorded."""
    secret = secret_new()
    monkeypatch.setenv("BACKPAIN_WEBHOOK_SECRET", secret)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "receiver"}
    exec(
        compile(code_block(docs_page(HOWTO), "python", "def application("), HOWTO, "exec"),
        namespace,
    )
    handled: list[dict[str, Any]] = []
    namespace["lead_handle"] = handled.append
    namespace["handled"] = handled
    namespace["secret"] = secret
    yield namespace
    namespace["db"].close()


def signed_request(secret: str, body: str, *, webhook_id: str | None = None) -> dict[str, str]:
    """The headers the app sends with ``body`` (``signed_headers``, as for a real event)."""
    endpoint = WebhookEndpoint(name="CRM", url="https://crm.example.com/hook", secret=secret)
    event = WebhookEvent(endpoint=endpoint, webhook_id=webhook_id or webhook_id_new(), body=body)
    return signed_headers(event, body.encode("utf-8"), timezone.now())


def wsgi_call(app, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
    """Call a WSGI ``app`` with a POST of ``body`` and ``headers``; its status and body."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/backpain-webhook",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": headers.get("Content-Type", ""),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "https",
        "SERVER_NAME": "crm.example.com",
        "SERVER_PORT": "443",
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[str] = []
    chunks = app(environ, lambda status, _headers: started.append(status))
    return started[0], b"".join(chunks)


def a_body() -> str:
    return body_encode(
        payload_build(
            EventType.SUBSCRIBER_ERASED, None, occurred_at=timezone.now(), subscriber_id=7
        )
    )


def test_the_receiver_accepts_what_the_app_signs_once_per_webhook_id(receiver):
    body = a_body()
    headers = signed_request(receiver["secret"], body)
    status, _ = wsgi_call(receiver["application"], body.encode(), headers)
    assert status.startswith("2")
    assert receiver["handled"] == [json.loads(body)]
    # A retry: the same webhook-id, signed again later; answered 2xx, not handled twice.
    again = signed_request(receiver["secret"], body, webhook_id=headers["webhook-id"])
    status, _ = wsgi_call(receiver["application"], body.encode(), again)
    assert status.startswith("2")
    assert len(receiver["handled"]) == 1


def test_the_receiver_refuses_a_tampered_body_a_wrong_secret_and_no_signature(receiver):
    body = a_body()
    headers = signed_request(receiver["secret"], body)
    tampered = body.replace('"id":7', '"id":8').encode()
    assert tampered != body.encode()
    assert wsgi_call(receiver["application"], tampered, headers)[0].startswith("401")
    forged = signed_request(secret_new(), body)
    assert wsgi_call(receiver["application"], body.encode(), forged)[0].startswith("401")
    bare = {"Content-Type": "application/json"}
    assert wsgi_call(receiver["application"], body.encode(), bare)[0].startswith("401")
    assert receiver["handled"] == []


def test_the_receiver_refuses_an_old_signature(receiver):
    """A replay: the signature was made more than five minutes ago."""
    body = a_body()
    endpoint = WebhookEndpoint(
        name="CRM", url="https://crm.example.com/", secret=receiver["secret"]
    )
    event = WebhookEvent(endpoint=endpoint, webhook_id=webhook_id_new(), body=body)
    old = signed_headers(event, body.encode(), timezone.now() - datetime.timedelta(minutes=10))
    assert wsgi_call(receiver["application"], body.encode(), old)[0].startswith("401")


def test_a_receiver_that_fails_answers_5xx_so_the_event_is_retried(receiver):
    """The handling raised: nothing is remembered for that webhook-id, so the retry is handled."""
    body = a_body()
    headers = signed_request(receiver["secret"], body)

    def broken(_event: dict[str, Any]) -> None:
        raise RuntimeError("CRM down")

    receiver["lead_handle"] = broken
    status, _ = wsgi_call(receiver["application"], body.encode(), headers)
    assert status.startswith("5")
    receiver["lead_handle"] = receiver["handled"].append
    status, _ = wsgi_call(receiver["application"], body.encode(), headers)
    assert status.startswith("2")
    assert receiver["handled"] == [json.loads(body)]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_n8n_code_verifies_what_the_app_signs(tmp_path):
    """The signature check of the n8n Code node (plain Node.js ``crypto``), run by node."""
    snippet = code_block(docs_page(HOWTO), "javascript", "function signatureValid(")
    function = snippet.split("// n8n:")[0]
    secret, body = secret_new(), a_body()
    headers = signed_request(secret, body)
    cases = {
        "good": (body, headers["webhook-signature"]),
        "tampered": (body.replace('"id":7', '"id":8'), headers["webhook-signature"]),
        "forged": (body, signed_request(secret_new(), body)["webhook-signature"]),
    }
    script = tmp_path / "check.js"
    script.write_text(
        function
        + "const cases = "
        + json.dumps(cases)
        + ";\nfor (const [name, [body, signature]] of Object.entries(cases)) {\n"
        + f"  console.log(name, signatureValid({json.dumps(secret)}, "
        + f"{json.dumps(headers['webhook-id'])}, {json.dumps(headers['webhook-timestamp'])}, "
        + "Buffer.from(body, 'utf8'), signature));\n}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        ["node", str(script)], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.split("\n")[:3] == ["good true", "tampered false", "forged false"]


# --- the reference's example payloads ---------------------------------------------------------

#: When the examples happened: a fixed moment, so the page can show them.
EXAMPLE_TIME = datetime.datetime(2025, 3, 14, 9, 26, 53, tzinfo=datetime.timezone.utc)


def example_subscriber(event_type: str) -> Subscriber:
    """The reader of the examples, as they are when ``event_type`` happens (unsaved rows)."""
    report = Report(pk=1, slug=REPORT_SLUG, title=REPORT_TITLE, edition=1)
    article = Article(
        pk=1, slug=ARTICLE_SLUG, title="Back Pain Muscle Spasms. Finding the Culprits"
    )
    article.report = report
    given = EXAMPLE_TIME - datetime.timedelta(minutes=2)
    subscriber = Subscriber(
        pk=42,
        email="ada@example.com",
        email_canonical="ada@example.com",
        name="Ada",
        language="en",
        source_article=article,
        source_url=f"https://reports.example.com/back-pain/articles/{ARTICLE_SLUG}/",
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="spring",
        referrer_host="news.example.org",
        consent_version="1",
        consented_at=given,
    )
    if event_type != EventType.SUBSCRIBER_CREATED:
        subscriber.confirmed_at = given + datetime.timedelta(minutes=1)
    if event_type == EventType.SUBSCRIBER_UNSUBSCRIBED:
        subscriber.unsubscribed_at = EXAMPLE_TIME
    if event_type == EventType.SUBSCRIBER_SUPPRESSED:
        subscriber.suppressed_at = EXAMPLE_TIME
    return subscriber


def example_payload(event_type: str) -> dict[str, Any]:
    """The payload the app builds for the example reader (``payload_build``, as sent)."""
    if event_type == EventType.SUBSCRIBER_ERASED:
        payload = payload_build(event_type, None, occurred_at=EXAMPLE_TIME, subscriber_id=42)
    else:
        subscriber = example_subscriber(event_type)
        report = subscriber.source_article.report if subscriber.source_article else None
        edition = 1 if event_type == EventType.REPORT_DELIVERED else None
        payload = payload_build(
            event_type, subscriber, occurred_at=EXAMPLE_TIME, report=report, edition=edition
        )
    return json.loads(body_encode(payload))  # exactly what goes on the wire, parsed


def documented_example(event_type: str) -> dict[str, Any]:
    section = docs_section(REFERENCE, f"`{event_type}`")
    blocks = re.findall(r"^```json\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"one example payload under `{event_type}`"
    return json.loads(blocks[0])


@pytest.mark.parametrize("event_type", [str(each) for each in SUBSCRIBABLE])
def test_the_example_payloads_are_what_the_app_sends(event_type, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "HASH_IP": True}
    assert documented_example(event_type) == example_payload(event_type)


@pytest.mark.django_db
def test_the_documented_test_event_is_what_the_admin_button_sends():
    endpoint = WebhookEndpoint.objects.create(
        name="Our CRM", url="https://crm.example.com/hook", secret=secret_new(), is_active=False
    )
    sent = json.loads(WebhookEvent.objects.get(pk=outbox.test_event_record(endpoint)).body)
    documented = documented_example(EventType.TEST)
    assert documented["type"] == sent["type"] == "test"
    assert documented["data"] == sent["data"] == {"schema_version": 1, "endpoint": "Our CRM"}
    assert set(documented) == set(sent) == {"type", "timestamp", "data"}


def test_the_consent_ip_is_documented_as_sent_only_with_hash_ip_off(settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "HASH_IP": False}
    subscriber = example_subscriber(EventType.SUBSCRIBER_CONFIRMED)
    subscriber.consent_ip = "203.0.113.9"
    sent = payload_build(EventType.SUBSCRIBER_CONFIRMED, subscriber, occurred_at=EXAMPLE_TIME)
    assert sent["data"]["subscriber"]["consent"]["ip"] == "203.0.113.9"
    schema = docs_section(REFERENCE, "The payload, schema version 1")
    assert "`ip`" in schema and "`HASH_IP`" in schema


# --- what must be documented ------------------------------------------------------------------


def test_every_event_type_is_documented():
    reference = docs_page(REFERENCE)
    for event_type in EventType:
        docs_section(REFERENCE, f"`{event_type.value}`")  # a heading of its own
    listed = re.findall(r"^\| `([a-z.]+)` \|", reference, re.MULTILINE)
    assert set(listed) == {str(each) for each in SUBSCRIBABLE}


def test_every_webhook_setting_is_documented():
    names = [setting.name for setting in SETTINGS if setting.name.startswith("WEBHOOK_")]
    assert len(names) >= 5
    howto = docs_page(HOWTO)
    assert [name for name in names if f"`{name}`" not in howto] == []


def test_every_webhook_header_is_documented():
    headers = signed_request(secret_new(), a_body())
    section = docs_section(REFERENCE, "Headers")
    assert [name for name in headers if f"`{name}`" not in section] == []


def test_the_readme_states_the_guarantee_and_links_the_howto():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Send leads to your CRM")[1].split("\n## ")[0]
    assert len(section.strip().splitlines()) <= 6
    section = " ".join(section.split())
    for words in ("at least once", "`webhook-id`", "order"):
        assert words in section, words
    assert "(docs/howto/webhooks.md)" in section


def test_the_guarantee_is_stated_where_the_promises_are():
    text = " ".join(docs_section("explanation/guarantees", "Webhooks: at least once").split())
    for words in (
        "at least once",
        "the same `webhook-id` on every attempt",
        "exists exactly when the change it reports committed",
        "order is not promised",
        "`MAX_ATTEMPTS`",
        "`failed`",
    ):
        assert words in text, words


def test_the_worker_command_consumes_the_default_webhook_queue():
    default = next(setting.default for setting in SETTINGS if setting.name == "WEBHOOK_QUEUE")
    howto = docs_page(HOWTO)
    assert f"celery -A yoursite worker -Q celery,{default}" in howto
    assert f"-Q {default}" in howto


def test_the_task_is_documented_with_its_queue():
    from backpain_report.webhooks.outbox import WEBHOOK_TASK

    text = docs_page("reference/tasks-signals")
    assert f"`{WEBHOOK_TASK}(event_id)`" in text and "`WEBHOOK_QUEUE`" in text


def test_the_pages_are_linked():
    pages = docs_pages()
    assert HOWTO in pages and REFERENCE in pages
    assert "(send-leads-to-your-crm)=" in pages[HOWTO]


def test_the_howto_settings_table_shows_the_schema_defaults():
    """The how-to repeats the webhook settings in a short table: their defaults are the schema's."""
    rows = dict(
        re.findall(r"^\| `(WEBHOOK_\w+)` \| (.+?) \|", docs_section(HOWTO, "Settings"), re.M)
    )
    schema = {s.name: s.default_shown() for s in SETTINGS if s.name.startswith("WEBHOOK_")}
    assert rows == schema
