"""What scheduled mail is due now: reminders, escalations and digests, each with its key.

Pure: the clock, the config, the calendar and plain facts of the open cases go in; a list
of due items comes out. Nothing here reads the database or the wall clock, so every rule
(working hours, bank holidays, catch-up after downtime, extensions) is table-tested on a
clock the test controls. run.py claims each key and queues the mail.

The stages of one case's deadline D, in order: a reminder at each offset (that many working
days before D, 0 = on D), then an escalation at each step of the ladder (that many working
days after D; a step "after 0" counts from the first working day past D). When a tick finds
several stages reached whose keys were never done (the daemon was down), only the latest is
sent; the earlier ones come back as `Stale`, recorded as skipped and never mailed. A
reminder whose deadline has passed is always stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

from mailbridge.config import Config, EscalationStep, EscalationTarget
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.policy import Sla, sla_for
from mailbridge.store.models import CaseStatus

OPEN = (CaseStatus.NEW, CaseStatus.IN_PROGRESS)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class CaseClock:
    """The facts of one case the schedule needs; read by run.py, built by hand in tests."""

    case_id: int
    reference: str
    status: str
    lead_officer: str | None  # the lead officer's email
    additional_officers: tuple[str, ...]
    service_area: str | None
    directorate: str | None
    enquiry_type: str | None
    deadline: date  # effective: extended_due or response_due
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Reminder:
    key: str
    case: CaseClock
    offset: int  # working days before the deadline this reminder is for
    days_left: int  # working days from today to the deadline (0: due today)
    to: tuple[str, ...]

    kind = "reminder"


@dataclass(frozen=True, slots=True)
class Escalation:
    key: str
    case: CaseClock
    step: EscalationStep
    days_over: int  # working days past the deadline, today
    to: tuple[str, ...]  # the step's targets that resolved to an address
    cc: tuple[str, ...]  # the coordinators, always told
    unresolved: tuple[str, ...]  # targets with no address (e.g. no head for the directorate)

    kind = "escalation"


@dataclass(frozen=True, slots=True)
class Stale:
    """A stage that came and went while nothing ran: recorded as skipped, never mailed."""

    key: str
    case: CaseClock
    superseded_by: str  # the key sent instead, or why nothing was

    kind = "skipped"


@dataclass(frozen=True, slots=True)
class DigestDue:
    key: str  # the period's key
    kind: str  # coordinator_digest | member_digest | management_summary
    day: date  # the day (coordinator digest) or the Monday of the ISO week (weekly ones)


Due = Reminder | Escalation | Stale | DigestDue


def reminder_key(reference: str, offset: int, deadline: date) -> str:
    return f"reminder:{reference}:{offset}:{deadline.isoformat()}"


def escalation_key(reference: str, after: int, deadline: date) -> str:
    return f"escalation:{reference}:{after}:{deadline.isoformat()}"


def _local(calendar: WorkingCalendar, now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("the schedule needs an aware 'now' (UTC or local)")
    return now.astimezone(calendar.zone)


def in_sending_hours(config: Config, calendar: WorkingCalendar, now: datetime) -> bool:
    """Case mail goes out on working days between send_at and send_until, council time."""
    local = _local(calendar, now)
    start = time.fromisoformat(config.schedule.send_at)
    end = time.fromisoformat(config.schedule.send_until)
    return calendar.is_working_day(local.date()) and start <= local.time() < end


def working_days_before(calendar: WorkingCalendar, day: date, count: int) -> date:
    """The working day `count` working days before `day` (0: `day` itself)."""
    current = day
    remaining = count
    while remaining > 0:
        current -= timedelta(days=1)
        if calendar.is_working_day(current):
            remaining -= 1
    return current


def _fold(value: str | None) -> str | None:
    return value.casefold() if value else None


def _recipients(
    config: Config, case: CaseClock, targets: Iterable[EscalationTarget]
) -> tuple[list[str], list[str]]:
    """The addresses of an escalation step's targets, and the targets that have none."""
    area = next(
        (a for a in config.service_areas if _fold(a.name) == _fold(case.service_area)), None
    )
    directorate_name = case.directorate or (area.directorate if area else None)
    directorate = next(
        (d for d in config.directorates if _fold(d.name) == _fold(directorate_name)), None
    )
    found: list[str] = []
    missing: list[str] = []
    for target in targets:
        if target == "lead":
            addresses = [case.lead_officer] if case.lead_officer else []
        elif target == "additional":
            addresses = list(case.additional_officers)
        elif target == "escalation_contact":
            addresses = [area.escalation_contact] if area and area.escalation_contact else []
        else:
            addresses = [directorate.head_email] if directorate and directorate.head_email else []
        if addresses or target == "additional":  # no additional officers is not a gap
            found.extend(a.strip().lower() for a in addresses)
        else:
            missing.append(target)
    return list(dict.fromkeys(found)), missing


@lru_cache(maxsize=4096)
def _reached(
    calendar: WorkingCalendar, today: date, deadline: date, reminders: tuple[int, ...]
) -> tuple[tuple[int, ...], int, int]:
    """For a deadline on `today`: the reminder offsets reached, the working days left, and
    the working days over. Cached: thousands of open cases share a few dozen deadlines."""
    offsets = tuple(o for o in reminders if today >= working_days_before(calendar, deadline, o))
    left = calendar.working_days_between(today, deadline) if today <= deadline else 0
    over = calendar.working_days_between(deadline, today) if today > deadline else 0
    return offsets, left, over


def case_due(
    config: Config, calendar: WorkingCalendar, today: date, case: CaseClock, sla: Sla | None = None
) -> list[Reminder | Escalation | Stale]:
    """One case's due stages on `today` (a working day, in sending hours): the latest stage
    reached, and the earlier reached ones as stale. Keys already done are the runner's to
    filter; this does not know them."""
    if case.status not in OPEN or case.paused or not case.lead_officer:
        return []
    sla = sla or sla_for(config, case.service_area, case.enquiry_type)
    deadline = case.deadline
    coordinators = tuple(dict.fromkeys(c.email.strip().lower() for c in config.coordinators))
    offsets, days_left, days_over = _reached(calendar, today, deadline, sla.reminders)
    # Stages reached by today, oldest first: (key, the mail or None when it can only be stale).
    reached: list[tuple[str, Reminder | Escalation | None]] = []
    for offset in offsets:  # largest first
        key = reminder_key(case.reference, offset, deadline)
        live = today <= deadline
        mail = Reminder(key, case, offset, days_left, (case.lead_officer,)) if live else None
        reached.append((key, mail))
    if today > deadline:
        for step in sla.escalation:  # smallest first
            if days_over >= step.after_working_days:
                key = escalation_key(case.reference, step.after_working_days, deadline)
                to, missing = _recipients(config, case, step.notify)
                mail = Escalation(
                    key,
                    case,
                    step,
                    days_over,
                    tuple(to),
                    tuple(a for a in coordinators if a not in to),
                    tuple(missing),
                )
                reached.append((key, mail))
    if not reached:
        return []
    latest_key, latest = reached[-1]
    why = latest_key if latest is not None else "the deadline passed before it was sent"
    out: list[Reminder | Escalation | Stale] = [Stale(k, case, why) for k, _ in reached[:-1]]
    out.append(latest if latest is not None else Stale(latest_key, case, why))
    return out


# --- when each stage comes (the case's next stage moment, deadlines/stages.py) --------------


def running(status: str, paused: bool, has_lead: bool) -> bool:
    """Whether the clock can have anything for a case: open, not paused, with a lead."""
    return status in OPEN and not paused and has_lead


@lru_cache(maxsize=4096)
def opening(calendar: WorkingCalendar, send_at: str, day: date) -> datetime:
    """The first moment case mail may go on or after `day` (UTC): `send_at`, council time,
    on the first working day from `day`. A stage reached on `day` is first planned then."""
    first = day if calendar.is_working_day(day) else calendar.next_working_day(day)
    local = datetime.combine(first, time.fromisoformat(send_at), tzinfo=calendar.zone)
    return local.astimezone(UTC)


@lru_cache(maxsize=4096)
def _stage_moments(
    calendar: WorkingCalendar,
    send_at: str,
    deadline: date,
    reminders: tuple[int, ...],
    steps: tuple[int, ...],
) -> tuple[datetime, ...]:
    """The moments of a deadline's stages, reminders (largest offset first) then steps."""
    days = [working_days_before(calendar, deadline, offset) for offset in reminders]
    # An escalation "after 0" counts from the first day past the deadline, working or not.
    days += [
        deadline + timedelta(days=1) if after == 0 else calendar.add_working_days(deadline, after)
        for after in steps
    ]
    return tuple(opening(calendar, send_at, day) for day in days)


def stages(
    config: Config, calendar: WorkingCalendar, reference: str, deadline: date, sla: Sla
) -> list[tuple[str, datetime]]:
    """Every stage of one deadline: its key and the moment `case_due` first returns it."""
    steps = tuple(step.after_working_days for step in sla.escalation)
    keys = [reminder_key(reference, offset, deadline) for offset in sla.reminders]
    keys += [escalation_key(reference, after, deadline) for after in steps]
    moments = _stage_moments(calendar, config.schedule.send_at, deadline, sla.reminders, steps)
    return list(zip(keys, moments, strict=True))


def _at(value: str) -> time | None:
    return time.fromisoformat(value) if value else None


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def weekly_send_day(calendar: WorkingCalendar, day: date, weekday: str) -> tuple[date, date]:
    """The latest `weekday` on or before `day` (the period), and the day its digest goes
    out: that day, or the first working day after it."""
    anchor = day - timedelta(days=(day.weekday() - WEEKDAYS.index(weekday)) % 7)
    send = anchor if calendar.is_working_day(anchor) else calendar.next_working_day(anchor)
    return anchor, send


def digests_due(config: Config, calendar: WorkingCalendar, now: datetime) -> list[DigestDue]:
    """The digests whose time has come today. Each is due only on its own day, from its time
    to midnight: a day missed entirely is not made up later (the next one is newer)."""
    local = _local(calendar, now)
    today, clock = local.date(), local.time()
    sched = config.schedule
    out: list[DigestDue] = []
    daily = _at(sched.coordinator_digest_at)
    if daily is not None and calendar.is_working_day(today) and clock >= daily:
        out.append(
            DigestDue(f"digest:coordinators:{today.isoformat()}", "coordinator_digest", today)
        )
    weekly = (
        ("member_digest", "digest:members", sched.member_digest_day, sched.member_digest_at),
        (
            "management_summary",
            "summary",
            sched.management_summary_day,
            sched.management_summary_at,
        ),
    )
    for kind, prefix, weekday, at in weekly:
        start = _at(at)
        anchor, send = weekly_send_day(calendar, today, weekday)
        if start is not None and send == today and clock >= start:
            monday = anchor - timedelta(days=anchor.weekday())
            out.append(DigestDue(f"{prefix}:{iso_week(anchor)}", kind, monday))
    return out


def due(
    config: Config, calendar: WorkingCalendar, now: datetime, cases: Sequence[CaseClock]
) -> list[Due]:
    """Everything due at `now`: the digests, then (in sending hours only) the case stages."""
    out: list[Due] = list(digests_due(config, calendar, now))
    if in_sending_hours(config, calendar, now):
        out.extend(stages_due(config, calendar, now, cases))
    return out


def stages_due(
    config: Config, calendar: WorkingCalendar, now: datetime, cases: Sequence[CaseClock]
) -> list[Reminder | Escalation | Stale]:
    """The cases' stages due at `now`, which is in sending hours."""
    today = _local(calendar, now).date()
    slas: dict[tuple[str | None, str | None], Sla] = {}
    out: list[Reminder | Escalation | Stale] = []
    for case in cases:
        kind = (case.service_area, case.enquiry_type)
        if kind not in slas:
            slas[kind] = sla_for(config, *kind)
        out.extend(case_due(config, calendar, today, case, slas[kind]))
    return out
