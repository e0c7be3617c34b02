"""Small writes on a delivery after it was sent: downloads and download links."""

from __future__ import annotations

from django.db.models import F, QuerySet
from django.utils import timezone

from .models import Delivery


def delivery_downloaded(*, delivery: Delivery) -> None:
    """Record the first download of a delivery's PDF (later ones change nothing)."""
    Delivery.objects.filter(pk=delivery.pk, downloaded_at__isnull=True).update(
        downloaded_at=timezone.now()
    )


def download_links_revoke(deliveries: QuerySet[Delivery]) -> int:
    """Make every download link sent so far for these deliveries stop working."""
    return deliveries.update(link_version=F("link_version") + 1)
