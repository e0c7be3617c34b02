"""The real-services tier's harness (no tests here): the services and the site it drives.

- ``gating``: which services are configured and reachable (skip, or fail under
  ``BACKPAIN_REQUIRE_SERVICES=1``), and Chromium;
- ``processes``: subprocesses with logs, free ports, waiting;
- ``database``: a private PostgreSQL database per test module;
- ``smtp``: an aiosmtpd sink collecting the site's mail;
- ``stack``: the example site on real services (migrate, gunicorn, a Celery worker): the one
  place that starts the site's processes, for every tier and for ``benchmarks/``;
- ``services``: a private Redis and PostgreSQL cluster (fault and multi-host tiers, benchmarks);
- ``wsgi``: the site behind a stand-in for the production front end (static files, CSP, real IP);
- ``web``: a reader's HTTP client (CSRF, forms, the sign-up);
- ``checks``: what a delivered report must look like (the PDF attachment);
- ``faults`` and ``faults_site``: a scripted SMTP server that can be broken on purpose, and the
  site the fault tests run against;
- ``varnish``: a private, stock Varnish in front of a site (the Varnish tier);
- ``webhook_receiver`` and ``webhook_receiver_client``: a loopback process checking signed
  webhooks, answering as scripted and recording each request, and its test-side handle;
- ``tls``: a throw-away certificate authority and a server certificate for the receiver's HTTPS.
"""
