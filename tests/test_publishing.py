"""Publishing reuses idle bounded broker connections; a failed one is never reused."""

import contextlib

import pytest

from backpain_report import broker
from backpain_report.delivery import publishing


@pytest.fixture
def opened(monkeypatch):
    """Every broker connection publishing opens, and every one it closes."""
    broker.connection_pool.clear()
    made, closed = [], []
    real = broker.current_app.connection_for_write

    def connection_for_write(*args, **kwargs):
        connection = real(*args, **kwargs)
        made.append(connection)
        release = connection.release

        def counted_release():
            closed.append(connection)
            release()

        connection.release = counted_release
        return connection

    monkeypatch.setattr(broker.current_app, "connection_for_write", connection_for_write)
    yield made, closed
    broker.connection_pool.clear()


def test_consecutive_publishes_share_one_connection(opened, monkeypatch):
    made, closed = opened
    sent = []
    monkeypatch.setattr(
        broker.current_app, "send_task", lambda name, **kw: sent.append(kw["connection"])
    )
    for pk in (1, 2, 3):
        publishing._publish([(publishing.SIGNUP_TASK, [pk], [])], None)
    assert len(made) == 1 and sent == [made[0]] * 3 and not closed


def test_a_connection_that_failed_is_closed_and_never_reused(opened, monkeypatch):
    made, closed = opened

    def broker_down(name, **kw):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(broker.current_app, "send_task", broker_down)
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    assert closed == made == [made[0]]
    monkeypatch.setattr(broker.current_app, "send_task", lambda name, **kw: None)
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2  # a fresh connection after the failure


def test_a_forked_process_opens_its_own_connection(opened, monkeypatch):
    made, _closed = opened
    monkeypatch.setattr(broker.current_app, "send_task", lambda name, **kw: None)
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    monkeypatch.setattr(broker.os, "getpid", lambda: -1)  # as seen from a child process
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2


def test_a_connection_idle_too_long_is_closed_not_reused(opened, monkeypatch):
    """A broker may have dropped an idle connection without a word (review of issue 11)."""
    made, closed = opened
    monkeypatch.setattr(broker.current_app, "send_task", lambda name, **kw: None)
    clock = [1000.0]
    monkeypatch.setattr(broker.time, "monotonic", lambda: clock[0])
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    clock[0] += broker.ConnectionPool.MAX_IDLE + 1
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2 and closed == [made[0]]


class PausableProxy:
    """A TCP proxy to ``target`` on a free local port; ``freeze()`` stops forwarding both ways
    (the broker looks alive: the socket stays open, nothing comes back)."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target = target
        self.frozen = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink) -> None:
        import time

        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            pass

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.frozen.clear()
        for sock in [self.server, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.services
@pytest.mark.django_db
def test_a_frozen_amqp_broker_behind_a_pooled_connection_is_a_failed_publish(settings):
    """RabbitMQ frozen while a pooled connection is open: without publisher confirms the
    message sat in the socket buffer and the publish counted as sent. With them the publish
    waits for the broker's ack, gives up within about PUBLISH_TIMEOUT and reports 0 sent."""
    import time
    from urllib.parse import urlsplit

    from tests.realservices.support.gating import require_service

    url = urlsplit(require_service("amqp"))
    proxy = PausableProxy((url.hostname or "127.0.0.1", url.port or 5672))
    app = broker.current_app
    old_url = app.conf.broker_url
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "PUBLISH_TIMEOUT": 1}
    app.conf.broker_url = url._replace(
        netloc=f"{url.username}:{url.password}@127.0.0.1:{proxy.port}"
    ).geturl()
    broker.connection_pool.clear()
    queue = "backpain-frozen-test"
    try:
        args = ([(publishing.SIGNUP_TASK, [0], [0])], None)  # row 0: no such row
        with pytest.MonkeyPatch.context() as patch:
            real = app.send_task
            patch.setattr(app, "send_task", lambda name, **kw: real(name, queue=queue, **kw))
            assert publishing._publish(*args, record_sent=False) == 1  # the pool keeps it
            proxy.freeze()
            started = time.monotonic()
            assert publishing._publish(*args, record_sent=False) == 0
            assert time.monotonic() - started < 5
    finally:
        proxy.close()
        broker.connection_pool.clear()
        app.conf.broker_url = old_url
        with app.connection_for_write(require_service("amqp")) as connection:
            connection.default_channel.queue_delete(queue)


def test_a_publish_names_no_queue_unless_given(monkeypatch):
    """Sign-ups and deliveries go where the site's routing sends them (no ``queue`` keyword,
    which would also clash with a wrapper that names one); webhook events name theirs."""
    seen: list[dict] = []
    monkeypatch.setattr(broker.current_app, "send_task", lambda name, **kw: seen.append(kw))
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None, record_sent=False)
    broker.rows_publish(
        [("t", [2], [])], None, publishing.Delivery, queue="hooks", record_sent=False
    )
    assert "queue" not in seen[0] and seen[1]["queue"] == "hooks"
