import csv
import io
import tracemalloc

import pytest
from django.urls import reverse

from backpain_report.models import Subscriber
from backpain_report.rights.export import subscriber_csv_lines
from benchmarks.devtools.populate import populate


def test_csv_lines_quote_and_neutralise_formulas(make_subscriber, make_delivery):
    make_delivery(make_subscriber(name='Ann "the, reader"'), status="sent")
    make_subscriber(name="@SUM(A1)", email="x@example.com")
    text = "".join(subscriber_csv_lines(Subscriber.objects.order_by("pk")))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["email", "name", "source_article"]
    assert rows[1][1] == 'Ann "the, reader"' and rows[1][-1] == "sent"
    assert rows[2][1] == "'@SUM(A1)" and rows[2][-1] == ""


def _stream(response) -> tuple[int, int, int]:
    """(lines, bytes, tracemalloc peak) of consuming a streamed response."""
    assert response.streaming
    tracemalloc.start()
    try:
        lines = size = 0
        for chunk in response.streaming_content:
            lines += chunk.count(b"\n")
            size += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lines, size, peak


@pytest.mark.slow
def test_large_export_streams_every_row_in_bounded_memory(admin_client, article):
    populate(subscribers=20_000, seed=7)
    url = reverse("admin:backpain_report_subscriber_export")
    lines, size, peak = _stream(admin_client.get(url))
    assert lines == 20_001 and size > 3_000_000
    # Memory is one chunk of 2,000 rows, whatever the size of the file...
    assert peak < size * 0.7, (peak, size)
    few = Subscriber.objects.order_by("pk").values_list("created_at", flat=True)[4_000]
    small_lines, _small_size, small_peak = _stream(
        admin_client.get(url, {"created_at_to": few.date().isoformat()})
    )
    assert 4_000 < small_lines < 6_000
    # ...so five times the rows take about the same memory, not five times as much.
    assert peak < small_peak * 1.5, (peak, small_peak)
