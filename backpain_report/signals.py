"""Extension points for sites. The app sends these; it never relies on them itself.

All are sent after the database change they describe has been committed.

- ``subscriber_created(sender=Subscriber, subscriber=...)``: a new sign-up (or a re-subscription).
- ``subscriber_confirmed(sender=Subscriber, subscriber=...)``: the reader confirmed the address.
- ``report_delivered(sender=Delivery, delivery=...)``: the report email was accepted for delivery.
- ``subscriber_unsubscribed(sender=Subscriber, subscriber=...)``: the reader withdrew consent.
"""

from django.dispatch import Signal

subscriber_created = Signal()
subscriber_confirmed = Signal()
report_delivered = Signal()
subscriber_unsubscribed = Signal()
