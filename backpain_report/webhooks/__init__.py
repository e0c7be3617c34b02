"""Webhook events: what happened to a subscriber, as signed JSON for the site's CRM.

:mod:`.events` builds the payload (schema version 1), :mod:`.outbox` writes one outbox row per
endpoint in the transaction of the change, :mod:`.endpoints` makes secrets and checks URLs. The
sending (HTTP, signing, SSRF guard) is in :mod:`backpain_report.delivery.webhooks`.
"""
