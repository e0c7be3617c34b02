"""Signed links: one salt per purpose, so a token made for one thing works for nothing else."""

from __future__ import annotations

from django.core import signing

UNSUBSCRIBE_SALT = "backpain_report.unsubscribe"


def make_unsubscribe_token(subscriber_id: int) -> str:
    """A token naming the subscriber; it does not expire, so old emails keep working."""
    return signing.dumps({"s": subscriber_id}, salt=UNSUBSCRIBE_SALT, compress=True)


def read_unsubscribe_token(token: str) -> int | None:
    """The subscriber id in a valid unsubscribe token, or None when it was tampered with."""
    try:
        data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    subscriber_id = data.get("s") if isinstance(data, dict) else None
    return subscriber_id if isinstance(subscriber_id, int) else None
