"""Publishing reuses idle bounded broker connections; a failed one is never reused."""

import pytest

from backpain_report import publishing


@pytest.fixture
def opened(monkeypatch):
    """Every broker connection publishing opens, and every one it closes."""
    publishing._pool.clear()
    made, closed = [], []
    real = publishing.current_app.connection_for_write

    def connection_for_write(*args, **kwargs):
        connection = real(*args, **kwargs)
        made.append(connection)
        release = connection.release

        def counted_release():
            closed.append(connection)
            release()

        connection.release = counted_release
        return connection

    monkeypatch.setattr(publishing.current_app, "connection_for_write", connection_for_write)
    yield made, closed
    publishing._pool.clear()


def test_consecutive_publishes_share_one_connection(opened, monkeypatch):
    made, closed = opened
    sent = []
    monkeypatch.setattr(
        publishing.current_app, "send_task", lambda name, **kw: sent.append(kw["connection"])
    )
    for pk in (1, 2, 3):
        publishing._publish([(publishing.SIGNUP_TASK, [pk], [])], None)
    assert len(made) == 1 and sent == [made[0]] * 3 and not closed


def test_a_connection_that_failed_is_closed_and_never_reused(opened, monkeypatch):
    made, closed = opened

    def broker_down(name, **kw):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(publishing.current_app, "send_task", broker_down)
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    assert closed == made == [made[0]]
    monkeypatch.setattr(publishing.current_app, "send_task", lambda name, **kw: None)
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2  # a fresh connection after the failure


def test_a_forked_process_opens_its_own_connection(opened, monkeypatch):
    made, _closed = opened
    monkeypatch.setattr(publishing.current_app, "send_task", lambda name, **kw: None)
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    monkeypatch.setattr(publishing.os, "getpid", lambda: -1)  # as seen from a child process
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2


def test_a_connection_idle_too_long_is_closed_not_reused(opened, monkeypatch):
    """A broker may have dropped an idle connection without a word (review of issue 11)."""
    made, closed = opened
    monkeypatch.setattr(publishing.current_app, "send_task", lambda name, **kw: None)
    clock = [1000.0]
    monkeypatch.setattr(publishing.time, "monotonic", lambda: clock[0])
    publishing._publish([(publishing.SIGNUP_TASK, [1], [])], None)
    clock[0] += publishing._ConnectionPool.MAX_IDLE + 1
    publishing._publish([(publishing.SIGNUP_TASK, [2], [])], None)
    assert len(made) == 2 and closed == [made[0]]
