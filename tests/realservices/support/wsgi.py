"""``example_project.wsgi`` behind a stand-in for the production front end.

What a reverse proxy does for a production site, done here in a few lines:

- Static files: with ``DEBUG`` off nothing in Django serves ``/static/``; WhiteNoise or the web
  server does. Django's own ``StaticFilesHandler`` stands in, so the browser tier sees the pages
  (and the admin) styled as readers and staff would.
- A strict Content-Security-Policy, as django-csp or the front end would send it
  (``script-src 'self'; style-src 'self'``): the browser tier fails on any violation, so no
  page may rely on inline script or style. The admin is left out (it is Django's, not ours).
- The client's address: a proxy such as nginx with ``real_ip`` hands the application the reader's
  IP as ``REMOTE_ADDR``. Here an ``X-Real-IP`` header from the test client plays the reader's IP,
  so many simulated readers are not all ``127.0.0.1`` to the app's per-IP sign-up throttle.
"""

from __future__ import annotations

import contextlib
import ipaddress

from django.contrib.staticfiles.handlers import StaticFilesHandler

from example_project.wsgi import application as site_application

REAL_IP_HEADER = "HTTP_X_REAL_IP"


class RealIP:
    """Take ``REMOTE_ADDR`` from ``X-Real-IP`` when it is a valid IP address."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        value = environ.pop(REAL_IP_HEADER, "").strip()
        # A value that is not an address leaves the socket's peer in place.
        if value:
            with contextlib.suppress(ValueError):
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(value))
        return self.app(environ, start_response)


CSP = "script-src 'self'; style-src 'self'"
CSP_EXEMPT = ("/admin/",)


class StrictCSP:
    """Add :data:`CSP` to every response but the admin's and those with a policy of their own."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(CSP_EXEMPT):
            return self.app(environ, start_response)

        def start(status, headers, exc_info=None):
            if not any(k.lower() == "content-security-policy" for k, _v in headers):
                headers = [*headers, ("Content-Security-Policy", CSP)]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


application = RealIP(StrictCSP(StaticFilesHandler(site_application)))
