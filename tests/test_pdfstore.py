"""Readers' stored PDFs: stored once, served from storage, revalidated, throttled, erased."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date, parse_http_date

from backpain_report.delivery.sending import delivery_send
from backpain_report.delivery.tokens import make_download_token
from backpain_report.models import Delivery
from backpain_report.report import pdfstore
from backpain_report.services.privacy import subscriber_erase

FAKE_PDF = b"%PDF-1.7\n% a stand-in for a rendered report\n%%EOF\n"


@pytest.fixture
def private_dir(settings, tmp_path: Path) -> Path:
    """This test's own private storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "backpain_report": {
            "BACKEND": "backpain_report.report.privatestorage.PrivateStorage",
            "OPTIONS": {"location": str(tmp_path / "private")},
        },
    }
    return tmp_path / "private"


@pytest.fixture
def renders(monkeypatch) -> list[int]:
    """Replace the download view's renderer; the ids of the deliveries it rendered."""
    rendered: list[int] = []

    def render(delivery: Delivery, language: str | None = None) -> bytes:
        rendered.append(delivery.pk)
        return FAKE_PDF + str(delivery.pk).encode()

    monkeypatch.setattr(pdfstore, "delivery_pdf", render)
    return rendered


def download(client, delivery, remote_addr="192.0.2.10", **headers):
    path = reverse("backpain_report:download", args=[make_download_token(delivery)])
    return client.get(path, REMOTE_ADDR=remote_addr, **headers)


def stored_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "app",
    [
        {"DELIVERY": "link"},
        {"DELIVERY": "both"},
        {"DELIVERY": "attach", "MAX_EMAIL_SIZE": 100_000},  # too big: a link instead
    ],
    ids=["link", "both", "attach-too-big"],
)
def test_an_email_with_a_link_stores_the_pdf_and_the_link_never_renders(
    client, make_delivery, settings, private_dir, renders, app
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, **app}
    delivery = make_delivery()
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    files = stored_files(private_dir / "backpain_report" / "readers")
    assert len(files) == 1
    response = download(client, delivery)
    assert response.status_code == 200
    assert response.content == files[0].read_bytes()
    assert response.content.startswith(b"%PDF")
    assert renders == []  # the web process rendered nothing
    assert "/download/" in mail.outbox[0].body


def test_an_email_with_the_pdf_attached_stores_nothing(make_delivery, private_dir, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "attach"}
    delivery_send(delivery_id=make_delivery().pk)
    assert mail.outbox[0].attachments and stored_files(private_dir) == []


def test_attach_mode_stores_it_on_the_first_download_only(
    client, make_delivery, private_dir, renders
):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    assert download(client, delivery).content == FAKE_PDF + str(delivery.pk).encode()
    assert download(client, delivery).status_code == 200
    assert renders == [delivery.pk]
    assert len(stored_files(private_dir)) == 1


def test_a_reopen_is_a_304(client, make_delivery, private_dir, renders):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    first = download(client, delivery)
    etag, modified = first["ETag"], first["Last-Modified"]
    assert etag.startswith('W/"') and modified
    assert first["Cache-Control"] == "private, no-cache"
    again = download(client, delivery, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and not again.content
    since = download(client, delivery, HTTP_IF_MODIFIED_SINCE=modified)
    assert since.status_code == 304
    stale = download(client, delivery, HTTP_IF_NONE_MATCH='W/"something-else"')
    assert stale.status_code == 200 and stale.content.startswith(b"%PDF")
    # A day before the file's own time (the file system's clock, not the test's).
    older = http_date(parse_http_date(modified) - 86400)
    assert download(client, delivery, HTTP_IF_MODIFIED_SINCE=older).status_code == 200
    assert renders == [delivery.pk]


def test_bad_links_are_answered_before_any_file_is_touched(
    client, make_delivery, monkeypatch, private_dir
):
    def untouchable():
        raise AssertionError("the private storage was touched")

    monkeypatch.setattr(pdfstore, "private_storage", untouchable)
    revoked = make_delivery()
    path = reverse("backpain_report:download", args=[make_download_token(revoked)])
    Delivery.objects.filter(pk=revoked.pk).update(link_version=revoked.link_version + 1)
    assert client.get(path).status_code == 410
    gone = make_delivery()
    path = reverse("backpain_report:download", args=[make_download_token(gone)])
    gone.subscriber.unsubscribed_at = timezone.now()
    gone.subscriber.save()
    assert client.get(path).status_code == 410
    assert client.get(path.replace("/download/", "/download/x")).status_code == 400
    expired = make_delivery()
    path = reverse("backpain_report:download", args=[make_download_token(expired)])
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=31)
    with time_machine.travel(later):
        assert client.get(path).status_code == 410


def test_a_broken_storage_still_serves_the_pdf(
    client, make_delivery, monkeypatch, private_dir, renders, caplog
):
    def broken():
        raise OSError("disk on fire")

    monkeypatch.setattr(pdfstore, "private_storage", broken)
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    response = download(client, delivery)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    assert "Could not store the PDF" in caplog.text


def test_downloads_are_throttled_per_link(client, make_delivery, settings, private_dir, renders):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_DOWNLOAD": (2, 600)}
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    assert download(client, delivery, "192.0.2.1").status_code == 200
    assert download(client, delivery, "192.0.2.2").status_code == 200
    throttled = download(client, delivery, "192.0.2.3")  # a new IP, the same link
    assert throttled.status_code == 429
    page = throttled.content.decode()
    assert '<meta name="robots" content="noindex">' in page
    assert throttled["X-Robots-Tag"] == "noindex"
    assert "Please try again a little later" in page
    assert "backpain_report/css/backpain_report.css" in page and "bpr-message" in page
    other = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    assert download(client, other, "192.0.2.3").status_code == 200


def test_downloads_are_throttled_per_ip(client, make_delivery, settings, private_dir, renders):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_DOWNLOAD": (2, 600)}
    links = [make_delivery(status=Delivery.Status.SENT) for _ in range(4)]
    assert download(client, links[0], "2001:db8:5::1").status_code == 200
    assert download(client, links[1], "2001:db8:5::2").status_code == 200
    assert download(client, links[2], "2001:db8:5::3").status_code == 429  # same /64
    assert renders == [links[0].pk, links[1].pk]  # nothing rendered for the throttled one
    assert download(client, links[3], "198.51.100.4").status_code == 200


def test_a_garbage_token_flood_is_throttled_per_ip(client, settings):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_DOWNLOAD": (2, 600)}
    path = reverse("backpain_report:download", args=["not-a-token"])
    statuses = [client.get(path, REMOTE_ADDR="192.0.2.99").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_the_stored_name_is_keyed_and_says_nothing(make_delivery, settings):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    name = pdfstore.delivery_pdf_name(delivery)
    assert name.startswith("backpain_report/readers/") and name.endswith(".pdf")
    # Nothing but keyed hashes: no id, name or slug anyone could enumerate.
    assert re.fullmatch(
        r"backpain_report/readers/([0-9a-f]{2})/\1[0-9a-f]{30}/[0-9a-f]{32}\.pdf", name
    )
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"
    assert pdfstore.delivery_pdf_name(delivery) != name


def test_a_new_edition_or_name_is_a_new_file_and_the_old_one_goes(
    client, make_delivery, private_dir, renders
):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    first = download(client, delivery)["ETag"]
    delivery.report.edition += 1
    delivery.report.save()
    second = download(client, delivery)
    assert second["ETag"] != first and len(renders) == 2
    assert len(stored_files(private_dir)) == 1


def test_erasing_a_subscriber_deletes_their_stored_pdfs(
    client, make_delivery, private_dir, renders
):
    ann = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    second = make_delivery(  # a resend to the same reader
        subscriber=ann.subscriber, reason="resend", status=Delivery.Status.SENT
    )
    bob = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    for delivery in (ann, second, bob):
        assert download(client, delivery).status_code == 200
    assert len(stored_files(private_dir)) == 3
    subscriber_erase(subscriber=ann.subscriber)
    left = stored_files(private_dir)
    assert [p.name for p in left] == [pdfstore.delivery_pdf_name(bob).rpartition("/")[2]]
    for delivery in (ann, second):  # their folders went too
        assert not (private_dir / pdfstore.delivery_pdf_name(delivery)).parent.exists()
    assert download(client, ann).status_code == 410  # and the link stays dead


def test_delivery_files_delete_finds_files_named_under_an_old_key(
    make_delivery, settings, private_dir
):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    pdfstore.delivery_pdf_save(delivery, FAKE_PDF, pdfstore.delivery_prepared_on(delivery))
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "a-rotated-secret-key-for-this-test-only"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert pdfstore.delivery_files_delete([delivery.pk, 10**9]) == 1
    assert stored_files(private_dir) == []


def test_deleting_subscribers_or_deliveries_anywhere_deletes_their_stored_pdfs(
    client, admin_client, make_delivery, private_dir, renders, settings,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    """The admin's delete (page and action) and the purge leave no reader's PDF behind."""
    from backpain_report.models import Subscriber
    from backpain_report.services.privacy import subscribers_purge_unconfirmed

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DOUBLE_OPT_IN": True}
    ann, bob, cat, dan = (
        make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now()) for _ in range(4)
    )
    for delivery in (ann, bob, cat, dan):
        assert download(client, delivery).status_code == 200
    assert len(stored_files(private_dir)) == 4
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(  # the subscriber's delete page
            reverse("admin:backpain_report_subscriber_delete", args=[ann.subscriber_id]),
            {"post": "yes"},
        )
        admin_client.post(  # "delete selected" on deliveries
            reverse("admin:backpain_report_delivery_changelist"),
            {"action": "delete_selected", "_selected_action": [bob.pk], "post": "yes"},
        )
        # A re-subscribed reader who never confirmed again (asked 30 days ago: the request was
        # sent) is purged with their old PDF.
        asked = timezone.now() - datetime.timedelta(days=30)
        Subscriber.objects.filter(pk=cat.subscriber_id).update(
            consented_at=asked, confirmation_requested_at=asked
        )
        request = make_delivery(subscriber=cat.subscriber, kind=Delivery.Kind.CONFIRMATION)
        Delivery.objects.filter(pk=request.pk).update(
            created_at=asked, status=Delivery.Status.SENT, sent_at=asked
        )
        assert subscribers_purge_unconfirmed(older_than_days=10) == 1
    assert not Subscriber.objects.filter(pk=ann.subscriber_id).exists()
    assert not Delivery.objects.filter(pk=bob.pk).exists()
    [left] = stored_files(private_dir)
    assert pdfstore.delivery_pdf_find(dan) is not None and left.name.endswith(".pdf")


@pytest.fixture
def fake_worker_render(monkeypatch) -> None:
    """The worker "renders" FAKE_PDF (what is stored is the point, not the PDF)."""
    from backpain_report.delivery import sending

    monkeypatch.setattr(sending, "delivery_pdf", lambda delivery: FAKE_PDF)


@pytest.mark.parametrize("when", ["between-write-and-recheck", "after-the-recheck"])
def test_an_erasure_racing_the_worker_leaves_no_pdf_with_the_name(
    make_delivery, settings, private_dir, fake_worker_render, monkeypatch, when
):
    """The orderings test_privacy's mid-render erasure (before the write) does not reach."""
    from backpain_report.delivery import sending

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "link"}
    delivery = make_delivery()
    real_renew = sending._claim_renew
    calls = []

    def renew(claimed):
        calls.append(claimed.pk)
        if len(calls) > 1:  # only the re-check right after the file is written
            return real_renew(claimed)
        if when == "after-the-recheck":
            renewed = real_renew(claimed)
            assert len(stored_files(private_dir)) == 1  # the file is there, and wanted
            subscriber_erase(subscriber=claimed.subscriber)
            return renewed
        assert len(stored_files(private_dir)) == 1  # written, not yet re-checked
        subscriber_erase(subscriber=claimed.subscriber)
        return real_renew(claimed)

    monkeypatch.setattr(sending, "_claim_renew", renew)
    result = delivery_send(delivery_id=delivery.pk)
    assert result.outcome is sending.Outcome.SKIPPED and mail.outbox == []
    assert stored_files(private_dir) == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED


def test_a_reader_who_unsubscribes_during_a_link_render_keeps_no_stored_pdf(
    make_delivery, settings, private_dir, monkeypatch
):
    from backpain_report.delivery import sending
    from backpain_report.services.subscribers import subscriber_unsubscribe

    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "DELIVERY": "link"}
    delivery = make_delivery()

    def render_while_unsubscribing(claimed):
        subscriber_unsubscribe(subscriber_id=claimed.subscriber_id)
        return FAKE_PDF

    monkeypatch.setattr(sending, "delivery_pdf", render_while_unsubscribing)
    assert delivery_send(delivery_id=delivery.pk).outcome is sending.Outcome.SKIPPED
    assert mail.outbox == [] and stored_files(private_dir) == []  # nobody holds a link to it
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED
    assert delivery.last_error == "Unsubscribed before sending."


def test_a_pdf_no_longer_wanted_once_written_is_deleted_again(make_delivery, private_dir):
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    prepared_on = pdfstore.delivery_prepared_on(delivery)
    with pytest.raises(pdfstore.PdfNoLongerWanted):
        pdfstore.delivery_pdf_save(delivery, FAKE_PDF, prepared_on, still_wanted=lambda: False)
    assert stored_files(private_dir) == []

    def recheck_fails():
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        pdfstore.delivery_pdf_save(delivery, FAKE_PDF, prepared_on, still_wanted=recheck_fails)
    assert stored_files(private_dir) == []
    pdfstore.delivery_pdf_save(delivery, FAKE_PDF, prepared_on, still_wanted=lambda: True)
    assert len(stored_files(private_dir)) == 1


@pytest.mark.parametrize("change", ["erase", "revoke"])
def test_a_download_racing_an_erasure_or_a_revocation_keeps_no_pdf(
    client, make_delivery, private_dir, monkeypatch, change
):
    from backpain_report.services.deliveries import deliveries_links_revoke

    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())

    def render_while_changed(requested, language=None):
        if change == "erase":
            subscriber_erase(subscriber=requested.subscriber)
        else:
            deliveries_links_revoke(Delivery.objects.filter(pk=requested.pk))
        return FAKE_PDF

    monkeypatch.setattr(pdfstore, "delivery_pdf", render_while_changed)
    response = download(client, delivery)
    assert response.status_code == 410 and b"%PDF" not in response.content
    assert response["X-Robots-Tag"] == "noindex"
    assert stored_files(private_dir) == []
    delivery.refresh_from_db()
    assert delivery.downloaded_at is None


def head(client, delivery, remote_addr="192.0.2.10", **headers):
    path = reverse("backpain_report:download", args=[make_download_token(delivery)])
    return client.head(path, REMOTE_ADDR=remote_addr, **headers)


def test_a_head_request_never_renders_and_records_no_download(
    client, make_delivery, private_dir, renders
):
    """Mail scanners send HEAD: it answers the headers a GET would, at no render's cost."""
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    before = head(client, delivery)  # nothing stored yet
    assert before.status_code == 200 and before["Content-Type"] == "application/pdf"
    assert (
        before["Content-Disposition"] == 'inline; filename="back-pain-relief-guide-edition-1.pdf"'
    )
    assert "Content-Length" not in before  # unknown without a render, so not made up
    assert before["X-Robots-Tag"] == "noindex"
    assert renders == [] and stored_files(private_dir) == []
    delivery.refresh_from_db()
    assert delivery.downloaded_at is None
    got = download(client, delivery)  # the GET renders, stores and records the download
    delivery.refresh_from_db()
    first_download = delivery.downloaded_at
    assert first_download is not None
    [stored] = stored_files(private_dir)
    after = head(client, delivery)
    assert after.status_code == 200 and after.content == b""
    assert after["Content-Length"] == str(stored.stat().st_size) == got["Content-Length"]
    for header in ("Content-Type", "Content-Disposition", "ETag", "Last-Modified"):
        assert after[header] == got[header]
    assert head(client, delivery, HTTP_IF_NONE_MATCH=got["ETag"]).status_code == 304
    assert renders == [delivery.pk]  # the one GET
    delivery.refresh_from_db()
    assert delivery.downloaded_at == first_download


def test_a_head_request_on_a_bad_link_is_answered_like_a_get(client, make_delivery, renders):
    revoked = make_delivery(status=Delivery.Status.SENT)
    path = reverse("backpain_report:download", args=[make_download_token(revoked)])
    Delivery.objects.filter(pk=revoked.pk).update(link_version=revoked.link_version + 1)
    assert client.head(path).status_code == 410
    assert client.head(path.replace("/download/", "/download/x")).status_code == 400
    assert renders == []


def test_head_requests_count_per_ip_but_never_use_up_a_links_downloads(
    client, make_delivery, settings, private_dir, renders
):
    settings.BACKPAIN_REPORT = {**settings.BACKPAIN_REPORT, "THROTTLE_DOWNLOAD": (2, 600)}
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    for scanner in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):  # three scanners, one link
        assert head(client, delivery, scanner).status_code == 200
    assert download(client, delivery, "198.51.100.7").status_code == 200  # the reader's
    assert head(client, delivery, "192.0.2.1").status_code == 200
    assert head(client, delivery, "192.0.2.1").status_code == 429  # a flood from one IP


def test_an_old_link_after_an_edit_serves_the_current_edition_named_by_it(
    client, make_delivery, private_dir, renders
):
    """Only the current edition can be rendered, so an old link always serves it, and its file
    name says so (the delivery still records the edition it was sent for)."""
    delivery = make_delivery(status=Delivery.Status.SENT, sent_at=timezone.now())
    first = download(client, delivery)
    assert first["Content-Disposition"].endswith('edition-1.pdf"')
    delivery.report.edition = 2  # the report is edited
    delivery.report.save()
    before = head(client, delivery)  # the edition-1 file is not the current one: no render
    assert before["Content-Disposition"].endswith('edition-2.pdf"') and len(renders) == 1
    assert "ETag" not in before
    second = download(client, delivery)
    assert second["Content-Disposition"].endswith('edition-2.pdf"')
    assert second.content == FAKE_PDF + str(delivery.pk).encode() and len(renders) == 2
    assert second["ETag"] != first["ETag"] and len(stored_files(private_dir)) == 1
    assert head(client, delivery)["ETag"] == second["ETag"]
    delivery.refresh_from_db()
    assert delivery.edition == 1
