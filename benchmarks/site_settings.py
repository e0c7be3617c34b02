"""The example site as the benchmark serves it: its settings, with the per-IP throttle off.

Every request of a load test comes from 127.0.0.1, so ``THROTTLE_IP`` is raised far above any
run's request count; nothing else differs from ``example_project.settings``.
"""

from example_project.settings import *  # noqa: F403
from example_project.settings import BACKPAIN_REPORT

BACKPAIN_REPORT = {**BACKPAIN_REPORT, "THROTTLE_IP": (10**9, 3600)}
