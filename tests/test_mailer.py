"""The mail adapter: the backend the app sends through, and its timeout."""

import pytest

from backpain_report.delivery.mailer import lease_mail_timeout, open_mailer
from tests.mail_backends import smtp_configure


@pytest.fixture
def smtp_settings(settings):
    def configure(timeout=None):
        smtp_configure(settings, timeout=timeout)

    return configure


def test_an_smtp_backend_without_a_timeout_gets_one_that_fits_the_lease(smtp_settings, settings):
    """Regression (issue 10, item 3): Django's default is no SMTP timeout at all, so a hung
    server held the delivery's claim forever."""
    smtp_settings()
    assert open_mailer().timeout == 90.0  # (600 s lease - 60 s render) / 6 waits
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "CLAIM_LEASE": 300}
    assert open_mailer().timeout == 40.0
    assert lease_mail_timeout(10) == 1.0  # never below 1 s (check E004 reports such a lease)


def test_a_configured_timeout_is_kept(smtp_settings):
    smtp_settings(timeout=7)
    assert open_mailer().timeout == 7


def test_other_backends_are_left_alone():
    backend = open_mailer()
    assert type(backend).__module__ == "django.core.mail.backends.locmem"
    assert not hasattr(backend, "timeout")


def test_the_mail_timeout_bounds_each_wait_not_a_whole_step(settings):
    """Docs (How delivery works, Production): the timeout is a socket timeout. A server that
    drips its reply a byte at a time keeps one SMTP step going far past it."""
    import socket
    import threading
    import time

    greeting = b"220 a tarpit\r\n"
    pause = 0.1  # between bytes, well under the timeout
    timeout = 0.5

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        smtp_configure(settings, port=port, timeout=timeout)

        def drip() -> None:
            connection, _ = listener.accept()
            with connection:
                for byte in greeting:
                    connection.sendall(bytes([byte]))
                    time.sleep(pause)

        server = threading.Thread(target=drip, daemon=True)
        server.start()
        mailer = open_mailer()
        started = time.monotonic()
        assert mailer.open()  # the greeting arrives whole: no timeout
        elapsed = time.monotonic() - started
        mailer.close()
        server.join(5)
    assert elapsed > 2 * timeout  # one step (reading the greeting) outlasted the timeout twice
