"""Staff pages: the site owner's cockpit for the lead magnet.

One module per area; importing them registers their model admins with the default site:

- :mod:`.subscribers` — subscribers, their consent record and delivery timeline, CSV export;
- :mod:`.deliveries` — the outbox: resend, retry failed, cancel pending, download links;
- :mod:`.content` — articles and reports: Markdown preview, publishing, PDF preview, editions;
- :mod:`.followups` — a report's follow-up emails: preview, test to me, on/off, editions;
- :mod:`.funnel` — the funnel dashboard (page views to downloads, per article and day);
- :mod:`.signups` — sign-ups waiting for a worker (read-only);
- :mod:`.webhooks` — webhook endpoints: secret shown once, test event, retry failed;
- :mod:`.webhook_events` — the webhook events they were sent (read-only).

The lists stay fast at a million rows: :class:`.paginator.LargeTablePaginator` never counts a
whole table, list columns come from one query, and sorting is limited to indexed columns.
"""

from . import content, deliveries, followups, funnel, signups, subscribers, webhook_events, webhooks

__all__ = [
    "content",
    "deliveries",
    "followups",
    "funnel",
    "signups",
    "subscribers",
    "webhook_events",
    "webhooks",
]
