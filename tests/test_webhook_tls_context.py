"""The webhook POST's TLS context: made once per process, and still verifying."""

from __future__ import annotations

import ssl

from backpain_report.delivery import webhook_http


def test_one_tls_context_serves_every_call_and_verifies_certificate_and_host_name() -> None:
    context = webhook_http._tls_context()
    assert context is webhook_http._tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    connection = webhook_http._PinnedConnection(
        "example.com",
        443,
        webhook_http.ipaddress.ip_address("93.184.215.14"),
        tls=True,
        connect_timeout=1,
        read_timeout=1,
    )
    assert connection._tls_context is context
