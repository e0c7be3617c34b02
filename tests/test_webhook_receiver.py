"""The test webhook receiver (tests/realservices/support/webhook_receiver.py): a loopback
process that verifies Standard Webhooks signatures, answers as scripted, and records it all."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from tests.realservices.support.tls import TlsFiles, tls_files_make
from tests.realservices.support.webhook_receiver_client import Receiver


def secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET = secret_new()


def signed_headers(
    body: bytes, *, msg_id: str, secret: str = SECRET, timestamp: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed at ``timestamp`` (now)."""
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
    }


def event_body(kind: str = "subscriber.created") -> bytes:
    return json.dumps({"type": kind, "timestamp": time.time(), "data": {"id": 7}}).encode()


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0
) -> tuple[int, dict[str, str]]:
    """POST ``body``; the status and the response headers, whatever the status."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers)


def records_of(receiver: Receiver, msg_id: str) -> list[dict]:
    return [record for record in receiver.records() if record["webhook_id"] == msg_id]


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as receiver:
        yield receiver


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Iterator[Receiver]:
    """The module's receiver with nothing scripted (each test uses webhook-ids of its own)."""
    shared_receiver.reset()
    yield shared_receiver
    shared_receiver.reset()


def test_a_signed_request_is_accepted_and_recorded(receiver: Receiver) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()
    headers = signed_headers(body, msg_id=msg_id)
    before = time.monotonic()

    assert post(receiver.url, body, headers)[0] == 200

    [record] = records_of(receiver, msg_id)
    assert record["verified"] is True
    assert record["reason"] is None
    assert record["status"] == 200
    assert record["path"] == "/hook"
    assert record["webhook_timestamp"] == headers["webhook-timestamp"]
    assert record["body"] == json.loads(body)
    assert record["body"]["type"] == "subscriber.created"
    assert before <= record["received_monotonic"] <= time.monotonic()
    assert abs(record["received_wall"] - time.time()) < 5
    assert msg_id in receiver.accepted_ids()


def test_a_chunked_body_is_read_whole(receiver: Receiver) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()
    request = urllib.request.Request(receiver.url, data=iter([body[:9], body[9:]]), method="POST")
    for name, value in signed_headers(body, msg_id=msg_id).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    [record] = records_of(receiver, msg_id)
    assert (record["verified"], record["size"], record["body"]) == (
        True,
        len(body),
        json.loads(body),
    )


def test_a_signed_body_that_is_not_json_is_answered_400(receiver: Receiver) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    assert post(receiver.url, b"not json", signed_headers(b"not json", msg_id=msg_id))[0] == 400
    [record] = records_of(receiver, msg_id)
    assert (record["verified"], record["reason"]) == (True, "body is not JSON")
    assert msg_id not in receiver.accepted_ids()


def _tampered(body: bytes, msg_id: str) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"7", b"8"), signed_headers(body, msg_id=msg_id)


def _wrong_secret(body: bytes, msg_id: str) -> tuple[bytes, dict[str, str]]:
    return body, signed_headers(body, msg_id=msg_id, secret=secret_new())


def _no_signature(body: bytes, msg_id: str) -> tuple[bytes, dict[str, str]]:
    headers = signed_headers(body, msg_id=msg_id)
    del headers["webhook-signature"]
    return body, headers


def _six_minutes_old(body: bytes, msg_id: str) -> tuple[bytes, dict[str, str]]:
    return body, signed_headers(body, msg_id=msg_id, timestamp=time.time() - 360)


def _six_minutes_ahead(body: bytes, msg_id: str) -> tuple[bytes, dict[str, str]]:
    return body, signed_headers(body, msg_id=msg_id, timestamp=time.time() + 360)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_tampered, "No matching signature found"),
        (_wrong_secret, "No matching signature found"),
        (_no_signature, "Missing required headers"),
        (_six_minutes_old, "Message timestamp too old"),
        (_six_minutes_ahead, "Message timestamp too new"),
    ],
)
def test_a_bad_signature_is_refused_and_recorded(receiver: Receiver, forge, reason: str) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    body, headers = forge(event_body(), msg_id)

    assert post(receiver.url, body, headers)[0] == 401

    [record] = records_of(receiver, msg_id)
    assert (record["verified"], record["status"], record["reason"]) == (False, 401, reason)
    assert record["body"] is None
    assert msg_id not in receiver.accepted_ids()


def test_a_request_without_any_header_is_refused_and_recorded(receiver: Receiver) -> None:
    path = f"/hook/{uuid.uuid4().hex}"
    assert post(receiver.base_url + path, event_body(), {})[0] == 401
    [record] = [record for record in receiver.records() if record["path"] == path]
    assert (record["verified"], record["webhook_id"], record["status"]) == (False, None, 401)


def test_a_get_is_answered_405_and_recorded(receiver: Receiver) -> None:
    path = f"/hook/{uuid.uuid4().hex}"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(receiver.base_url + path, timeout=5)
    caught.value.close()
    assert caught.value.code == 405
    [record] = [record for record in receiver.records() if record["path"] == path]
    assert (record["method"], record["verified"], record["status"]) == ("GET", False, 405)


def test_a_refusal_takes_no_step_of_the_script(receiver: Receiver) -> None:
    receiver.fail_next(1, status=503)
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()
    assert (
        post(receiver.url, body, signed_headers(body, msg_id=msg_id, secret=secret_new()))[0] == 401
    )
    assert post(receiver.url, body, signed_headers(body, msg_id=msg_id))[0] == 503


def test_fail_next_answers_each_attempt_as_scripted_then_200(receiver: Receiver) -> None:
    receiver.fail_next(2, status=500)
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()

    statuses = [post(receiver.url, body, signed_headers(body, msg_id=msg_id))[0] for _ in range(3)]

    assert statuses == [500, 500, 200]
    attempts = records_of(receiver, msg_id)
    assert [(r["verified"], r["status"]) for r in attempts] == [
        (True, 500),
        (True, 500),
        (True, 200),
    ]
    assert receiver.accepted_ids().count(msg_id) == 1


def test_retry_after_goes_with_the_scripted_failures_only(receiver: Receiver) -> None:
    receiver.fail_next(1, status=429, retry_after=2)
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()

    status, headers = post(receiver.url, body, signed_headers(body, msg_id=msg_id))
    assert (status, headers.get("Retry-After")) == (429, "2")
    status, headers = post(receiver.url, body, signed_headers(body, msg_id=msg_id))
    assert (status, headers.get("Retry-After")) == (200, None)
    assert [r["retry_after"] for r in records_of(receiver, msg_id)] == [2, None]


def test_reset_drops_the_script(receiver: Receiver) -> None:
    receiver.fail_next(3)
    assert len(receiver.control({})) == 3
    receiver.reset()
    assert receiver.control({}) == []
    body = event_body()
    assert (
        post(receiver.url, body, signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}"))[0] == 200
    )


def test_the_control_endpoint_wants_its_token_and_is_not_recorded(receiver: Receiver) -> None:
    before = len(receiver.records())
    url = f"{receiver.base_url}/_control?token=not-{receiver.token}"
    assert post(url, json.dumps({"fail_next": 5}).encode(), {})[0] == 403
    assert receiver.control({}) == []
    assert post(url.replace("not-", ""), b'{"fail_nxt": 1}', {})[0] == 400
    assert len(receiver.records()) == before


@pytest.mark.heavy
def test_a_held_back_answer_times_the_client_out_and_shutdown_stays_prompt() -> None:
    receiver = Receiver(SECRET)
    with receiver:
        receiver.hang_next(1, seconds=60)
        msg_id = f"msg_{uuid.uuid4().hex}"
        body = event_body()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(receiver.url, body, signed_headers(body, msg_id=msg_id), timeout=1)
        assert 0.9 < time.monotonic() - started < 5
        [record] = receiver.wait_for(
            lambda records: [r for r in records if r["webhook_id"] == msg_id], timeout=5
        )
        assert (record["verified"], record["hang_seconds"]) == (True, 60)
        assert receiver.accepted_ids() == []
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3
    assert len(receiver.records()) == 1  # still readable once stopped


def test_a_control_token_that_looks_like_an_option_still_starts_it() -> None:
    """``secrets.token_urlsafe`` begins with "-" once in 64 draws."""
    receiver = Receiver(SECRET)
    receiver.token = "-starts-with-a-dash"
    with receiver:
        assert receiver.control({"fail_next": 1}) == [
            {"status": 500, "retry_after": None, "hang_seconds": 0.0}
        ]


# HTTPS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files_make(tmp_path_factory.mktemp("webhook-tls"))


def test_with_tls_it_serves_https_that_trusts_its_ca(tls_files: TlsFiles) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = event_body()
    with Receiver(SECRET, tls=tls_files) as receiver:
        assert receiver.url.startswith("https://127.0.0.1:")
        receiver.fail_next(1, status=503)  # the control channel speaks TLS too
        request = urllib.request.Request(
            receiver.url, data=body, headers=signed_headers(body, msg_id=msg_id), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5, context=tls_files.client_context())
        refused.value.close()
        with urllib.request.urlopen(
            request, timeout=5, context=tls_files.client_context()
        ) as response:
            assert response.status == 200
        assert refused.value.code == 503
        assert receiver.accepted_ids() == [msg_id]


def test_with_tls_a_client_that_does_not_trust_the_ca_is_refused(tls_files: TlsFiles) -> None:
    body = event_body()
    with Receiver(SECRET, tls=tls_files) as receiver:
        headers = signed_headers(body, msg_id=f"msg_{uuid.uuid4().hex}")
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            post(receiver.url, body, headers)  # the system's CAs only
        assert receiver.records() == []
        plain = receiver.url.replace("https://", "http://")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(plain, body, headers)  # no plain HTTP beside it
        assert receiver.records() == []
