"""Development tools for backpain_report: a Django app, never shipped in the wheel.

Two management commands for measuring the app, not for running a site:

- ``backpain_populate --subscribers N``: fill a development or scale-test database with made-up
  subscribers, deliveries and page views (refuses to run with ``DEBUG`` off unless given
  ``--i-know-this-is-not-production``);
- ``backpain_bench``: what one report costs, a full render against the cached path.

A site gets them by adding ``"benchmarks.devtools"`` to ``INSTALLED_APPS`` from a checkout (the
test settings always do; the example site does with ``DEBUG`` on or ``EXAMPLE_DEVTOOLS=1``).
"""
