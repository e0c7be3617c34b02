"""Follow-up sequences: when each step falls due, the scheduler that makes its deliveries, and
saving a step (a text that already went out becomes an edition of its own).

A step of delay *d* is due for a reader whose report was sent on local date *D* (in the site's
``TIME_ZONE``) on *D + d* at ``FOLLOWUP_SEND_HOUR``. Daylight saving time: the hour is local
wall-clock time, so it stays 9 a.m. across the change; an hour the clocks skip (02:00 to 03:00
on a spring-forward day) is taken as the first moment that exists after it (03:00), and an hour
that happens twice (the autumn fold) as its first occurrence.

The scheduler (:func:`followups_schedule`) runs from the periodic sweep on every beat host. For
each active step of each report whose sequence is on, it locks the step's row (``SKIP LOCKED``:
a step another host is scheduling is left to it), reads the report deliveries sent in a window
of days (an index on ``sent_at``), and inserts one follow-up delivery per reader who agreed to
follow-ups and may be written to. The window runs from the step's cursor (less a day, so a
report recorded late is still caught) to the start of the first local day whose follow-up is
not yet due; a unique constraint (one follow-up per reader and step) makes the overlap and two
hosts at once harmless. Its cost grows with the readers due, not with the list.

Readers whose follow-up fell due more than ``FOLLOWUP_RESUME_MAX_AGE`` ago never get it: a
paused step (or a sequence switched off) that is resumed goes to the readers it fell due for
within that age, not to everyone it missed.
"""

from __future__ import annotations

import datetime
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from ..conf import app_settings
from ..delivery.publishing import publish_on_commit
from ..models import Delivery, FollowUpEdition, FollowUpStep
from ..rights.consent import awaiting_confirmation_q
from ..selectors import reader_language_q

logger = logging.getLogger(__name__)

SCHEDULE_TASK = "backpain_report.schedule_followups"
#: Rows per INSERT where the database has no ``INSERT ... SELECT ... RETURNING`` (see
#: :data:`INSERT_SELECT_VENDORS`).
INSERT_BATCH = 1000
#: How far before the step's cursor each pass looks again (a report whose ``sent_at`` was
#: recorded late); harmless, as a reader gets each step once.
OVERLAP = datetime.timedelta(days=1)


# --- Due times -------------------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE or "UTC")


def local_moment(day: datetime.date, hour: int, zone: ZoneInfo) -> datetime.datetime:
    """``day`` at ``hour`` o'clock wall-clock time in ``zone``, as an aware UTC datetime.

    A time the clocks skip (spring forward) is the first moment that exists after it (the end
    of the gap); a time that happens twice (autumn) is its first occurrence."""
    wall = datetime.datetime.combine(day, datetime.time(hour))
    first = wall.replace(tzinfo=zone)  # fold=0: the earlier offset
    utc = first.astimezone(datetime.timezone.utc)
    if utc.astimezone(zone).replace(tzinfo=None) == wall:
        return utc
    # In a gap: fold=0 lands after it, fold=1 before it; the gap ends between the two.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(datetime.timezone.utc)
    high = utc
    while high - low > datetime.timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def followup_due(sent_at: datetime.datetime, delay_days: int) -> datetime.datetime:
    """When a step of ``delay_days`` falls due for a report sent at ``sent_at`` (aware UTC)."""
    zone = _zone()
    day = sent_at.astimezone(zone).date() + datetime.timedelta(days=delay_days)
    return local_moment(day, int(app_settings.FOLLOWUP_SEND_HOUR), zone)


def _first_sent_day(moment: datetime.datetime, delay_days: int) -> datetime.date:
    """The first local date whose reports' follow-up falls due at or after ``moment``."""
    zone = _zone()
    hour = int(app_settings.FOLLOWUP_SEND_HOUR)
    due_day = moment.astimezone(zone).date()
    if local_moment(due_day, hour, zone) < moment:
        due_day += datetime.timedelta(days=1)
    return due_day - datetime.timedelta(days=delay_days)


def _midnight(day: datetime.date) -> datetime.datetime:
    return local_moment(day, 0, _zone())


def due_bound(now: datetime.datetime, delay_days: int) -> datetime.datetime:
    """The start of the first local day whose reports' follow-up is not due at ``now``: every
    report sent before it is due."""
    # Due at ``now`` exactly counts as due: the first day not due is the one due after now.
    return _midnight(_first_sent_day(now + datetime.timedelta(microseconds=1), delay_days))


def _oldest_sent(now: datetime.datetime, delay_days: int) -> datetime.datetime:
    """The start of the first local day whose reports' follow-up fell due at most
    ``FOLLOWUP_RESUME_MAX_AGE`` ago."""
    max_age = datetime.timedelta(seconds=int(app_settings.FOLLOWUP_RESUME_MAX_AGE))
    return _midnight(_first_sent_day(now - max_age, delay_days))


# --- The scheduler ---------------------------------------------------------------------------


def _steps_to_schedule() -> list[int]:
    """The ids of the active steps of the sequences that are on (a few rows)."""
    return list(
        FollowUpStep.objects.filter(is_active=True, report__followups_enabled=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _readers_due(step: FollowUpStep, lower: datetime.datetime, bound: datetime.datetime):
    """The readers a step is due for whose report was sent in ``[lower, bound)``: subscribed,
    not suppressed, agreed to follow-ups of this report (the one they signed up for), not
    waiting to confirm, writing in the step's language, not yet given the step."""
    had_it = Delivery.objects.filter(
        subscriber_id=OuterRef("subscriber_id"), step=step, kind=Delivery.Kind.FOLLOWUP
    )
    return (
        Delivery.objects.filter(
            kind=Delivery.Kind.REPORT,
            status=Delivery.Status.SENT,
            report_id=step.report_id,
            sent_at__gte=lower,
            sent_at__lt=bound,
            subscriber__unsubscribed_at__isnull=True,
            subscriber__suppressed_at__isnull=True,
            subscriber__followups_consented=True,
        )
        # The consent named *this* report's follow-ups: the report of the article the reader
        # signed up on (a later sign-up for another report keeps that record); a reader with no
        # source article recorded (deleted since) is taken at their word.
        .filter(
            Q(subscriber__source_article__isnull=True)
            | Q(subscriber__source_article__report_id=step.report_id)
        )
        .exclude(awaiting_confirmation_q("subscriber__"))
        .filter(reader_language_q(step.language, prefix="subscriber__"))
        .exclude(Exists(had_it))
        .order_by()
        .values_list("subscriber_id", flat=True)
        .distinct()
    )


def step_schedule(step_id: int, *, now: datetime.datetime) -> int:
    """Create the follow-up deliveries of one step that are due at ``now``; return how many.

    Skips a step another scheduler holds, or one paused or switched off meanwhile."""
    with transaction.atomic():
        step = (
            FollowUpStep.objects.select_for_update(skip_locked=True)
            .select_related("report")
            .filter(pk=step_id, is_active=True, report__followups_enabled=True)
            .first()
        )
        if step is None:
            return 0
        bound = due_bound(now, step.delay_days)
        start = step.scheduled_through or step.created_at
        lower = max(start - OVERLAP, _oldest_sent(now, step.delay_days))
        created = 0
        if lower < bound:
            created = _followups_create(step, _readers_due(step, lower, bound))
        # Never past the real time: ``now`` may be later (the development clock), and reports
        # sent from here on are still to be considered.
        through = min(bound, timezone.now())
        if step.scheduled_through is None or through > step.scheduled_through:
            FollowUpStep.objects.filter(pk=step.pk).update(scheduled_through=through)
    if created:
        logger.info("Follow-up step %s: %s deliveries scheduled.", step_id, created)
    return created


def _followups_create(step: FollowUpStep, readers: QuerySet) -> int:
    """Insert one pending follow-up delivery per reader of ``readers`` (a reader who has one
    already, made by another scheduler, is skipped by the unique constraint) and publish them
    after commit; return how many were made.

    They are stamped with the real time, not the scheduler's ``now`` (the development clock may
    be later): a publish lost to the broker is then re-published by the next sweeps."""
    template = Delivery(
        report_id=step.report_id,
        step=step,
        edition=step.edition,
        kind=Delivery.Kind.FOLLOWUP,
        reason=Delivery.Reason.SIGNUP,
        enqueued_at=timezone.now(),  # published after the commit (a lost one: the sweep)
    )
    if _insert_select_supported():
        ids = _rows_insert_select(template, readers)
    else:
        ids = _rows_bulk_create(template, list(readers))
    # Stamped ``enqueued_at`` above: the publish records only a failure (one UPDATE less).
    publish_on_commit(*ids, record_sent=False)
    return len(ids)


#: Databases whose SQL has ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``.
INSERT_SELECT_VENDORS = frozenset({"postgresql", "sqlite"})


def _insert_select_supported() -> bool:
    """Whether :func:`_rows_insert_select` can run here: one of :data:`INSERT_SELECT_VENDORS`,
    in a version whose ``INSERT`` returns rows (SQLite 3.35+; Django 5.2 runs on 3.31)."""
    return (
        connection.vendor in INSERT_SELECT_VENDORS
        and connection.features.can_return_rows_from_bulk_insert
    )


def _rows_insert_select(template: Delivery, readers: QuerySet) -> list[int]:
    """One statement: a row like ``template`` for each subscriber id ``readers`` selects,
    made in the database (nothing crosses the wire but the new ids); their ids.

    Each column's value is what ``bulk_create`` would send (``auto_now`` stamps, defaults; a
    ``db_default`` or generated column is left to the database), so a field added to
    :class:`Delivery` needs nothing here."""
    fields, values = [], []
    for field in Delivery._meta.concrete_fields:
        if field.primary_key or field.generated or field.attname == "subscriber_id":
            continue
        value = field.pre_save(template, add=True)
        if isinstance(value, DatabaseDefault):
            continue  # a ``db_default``: the database fills it in
        fields.append(field)
        values.append(field.get_db_prep_save(value, connection))
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in fields)
    select_sql, select_params = readers.query.sql_with_params()
    subscriber = quote("subscriber_id")  # the column ``readers`` selects, and Delivery's
    sql = (
        f"INSERT INTO {quote(Delivery._meta.db_table)} ({columns}, {subscriber}) "
        f"SELECT {', '.join(['%s'] * len(fields))}, due.{subscriber} FROM ({select_sql}) due "
        # ``WHERE``: SQLite would otherwise read ``ON CONFLICT`` as a join's ``ON``.
        f"WHERE 1 = 1 ON CONFLICT DO NOTHING RETURNING {quote(str(Delivery._meta.pk.column))}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, *select_params])
        return [row[0] for row in cursor.fetchall()]


def _rows_bulk_create(template: Delivery, readers: list[int]) -> list[int]:
    """The portable way (other databases): ``bulk_create`` in batches of at most
    ``INSERT_BATCH``, conflicts ignored, then the ids of the rows this pass made."""
    ids: list[int] = []
    size = _portable_batch_size()
    for start in range(0, len(readers), size):
        batch = readers[start : start + size]
        Delivery.objects.bulk_create(
            [_delivery_copy(template, subscriber_id) for subscriber_id in batch],
            ignore_conflicts=True,
        )
        ids += Delivery.objects.filter(
            step_id=template.step_id,
            kind=Delivery.Kind.FOLLOWUP,
            subscriber_id__in=batch,
            enqueued_at=template.enqueued_at,
            status=Delivery.Status.PENDING,
        ).values_list("pk", flat=True)
    return ids


def _portable_batch_size() -> int:
    """Readers per batch of the portable way: ``INSERT_BATCH``, fewer where the database limits
    a statement's parameters (SQLite before 3.32: 999 by default), since looking up a batch's
    rows takes one per reader and a few more."""
    limit = connection.features.max_query_params
    return INSERT_BATCH if limit is None else max(1, min(INSERT_BATCH, limit - 10))


def _delivery_copy(template: Delivery, subscriber_id: int) -> Delivery:
    return Delivery(
        subscriber_id=subscriber_id,
        report_id=template.report_id,
        step_id=template.step_id,
        edition=template.edition,
        kind=template.kind,
        reason=template.reason,
        enqueued_at=template.enqueued_at,
    )


def followups_schedule(now: datetime.datetime | None = None) -> int:
    """Create every follow-up delivery due at ``now`` (default: the current time); return how
    many. Safe on several hosts at once.

    A step the database refuses (a deadlock, a lock timeout, a reader deleted mid-pass) is
    logged and left to the next pass, its cursor unmoved; the other steps go on."""
    now = now or timezone.now()
    created = 0
    for step_id in _steps_to_schedule():
        try:
            created += step_schedule(step_id, now=now)
        except DatabaseError:
            logger.exception("Follow-up step %s: not scheduled this time (next pass).", step_id)
    return created


# --- Editing a step --------------------------------------------------------------------------


def _edition_sent(step: FollowUpStep) -> bool:
    """Whether the step's current edition went, is going or is queued to go out to a reader.

    A queued row counts: a worker may claim it and read the text while the edit is being
    saved, so the text of an edition stays fixed once a delivery is made for it (the scheduler
    makes them under the step's lock, which the edit holds)."""
    return Delivery.objects.filter(
        step=step,
        kind=Delivery.Kind.FOLLOWUP,
        edition=step.edition,
        status__in=[Delivery.Status.SENT, Delivery.Status.SENDING, Delivery.Status.PENDING],
    ).exists()


def step_save(step: FollowUpStep) -> FollowUpStep:
    """Save ``step``; when its subject or body changed and the current edition already went
    out (or is queued), keep that text as a :class:`FollowUpEdition` and make this one the next
    edition (the record says what each reader got). Pausing (``is_active`` off) stamps
    ``paused_at``; resuming clears it."""
    with transaction.atomic():
        if step.pk is None:
            step.save()
            return step
        old = FollowUpStep.objects.select_for_update().get(pk=step.pk)
        changed = (old.subject, old.body) != (step.subject, step.body)
        if changed and _edition_sent(old):
            FollowUpEdition.objects.get_or_create(
                step=old, edition=old.edition, defaults={"subject": old.subject, "body": old.body}
            )
            step.edition = old.edition + 1
        if old.is_active and not step.is_active:
            step.paused_at = timezone.now()
        elif step.is_active and not old.is_active:
            step.paused_at = None
        step.save()
    return step
