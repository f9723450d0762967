"""Clock control: recompute, pause, resume and reset a case's deadlines.

Every deadline here is counted by the same pure `plan` (received day or reset day, the SLA of
the case's service area and enquiry type, the working days it spent paused), so `calendar
recompute`, `case set`, `case resume` and `case reassign --reset-deadline` always agree, and
recomputing twice changes nothing. Each change is an Event with the old and the new date.

Decisions recorded here:

- A case is paused while `paused_at` is set (`is_paused`; in SQL `paused_at IS NOT NULL`).
  Reminders, escalations and the overdue counts skip paused cases.
- Resuming adds the working days after the pause day up to and including the resume day
  (`WorkingCalendar.working_days_between`): paused and resumed on the same day adds none.
  They go into `paused_working_days`, and move `response_due` and `extended_due` on.
- An officer's extension (`extended_due`) is kept as set when deadlines are recomputed,
  unless it no longer extends anything (on or before the recomputed `response_due`): then it
  is dropped, with its reason, and the event says so.
- `--reset-deadline` on reassignment counts the SLA's response days from the reassignment day
  (that day not counted), clears the extension and restarts the pause count (a paused case
  stays paused, counted from the reset). The case records the reset (`deadline_reset_on`,
  `deadline_reset_days`), which `plan` counts from ever after, so a later change of service
  area or enquiry type no longer moves that deadline, while a calendar change does.
- Completing or closing a paused case ends its pause first (`settle_pause`), as a resume
  would: the deadline it is measured against includes the paused days.
- Completed and closed cases are never recomputed: their deadlines are history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from mailbridge.cases.records import add_event
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.policy import Sla, deadlines, sla_for
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.store.models import Case, CaseStatus

log = logging.getLogger(__name__)

OPEN = (CaseStatus.NEW, CaseStatus.IN_PROGRESS)
RESET_KIND = "deadline_reset"
RECOMPUTED_KIND = "deadline_recomputed"
LABELS = {
    "acknowledge_due": "acknowledge by",
    "response_due": "reply due",
    "extended_due": "extended to",
}


def is_paused(case: Case) -> bool:
    """Whether the case's clock is stopped (`case pause`): no reminders, never overdue."""
    return case.paused_at is not None


@dataclass(frozen=True, slots=True)
class Reset:
    """A deadline a coordinator reset: `response_days` working days from `day`."""

    day: date
    response_days: int

    def mark(self) -> str:
        return f"({self.response_days} working days from {self.day.isoformat()})"


def reset_of(case: Case) -> Reset | None:
    """The reset the case records, if its deadline was ever reset."""
    if case.deadline_reset_on is None or case.deadline_reset_days is None:
        return None
    return Reset(case.deadline_reset_on, case.deadline_reset_days)


@dataclass(frozen=True, slots=True)
class Planned:
    acknowledge_due: date
    response_due: date
    extended_due: date | None


def plan(
    calendar: WorkingCalendar,
    sla: Sla,
    received_at: datetime,
    *,
    paused_working_days: int = 0,
    extended_due: date | None = None,
    reset: Reset | None = None,
) -> Planned:
    """The deadlines a case should have now (pure; see the module's decisions)."""
    base = deadlines(calendar, received_at, sla, paused_working_days)
    response = base.response_due
    if reset is not None:
        response = calendar.add_working_days(reset.day, reset.response_days + paused_working_days)
    kept = extended_due if extended_due is not None and extended_due > response else None
    return Planned(base.acknowledge_due, response, kept)


def _day(value: date | None) -> str:
    return value.isoformat() if value else "(none)"


def differences(case: Case, planned: Planned) -> tuple[str, ...]:
    """What would change, as people read it: "reply due 2026-12-08 → 2026-12-09"."""
    return tuple(
        f"{label} {_day(getattr(case, name))} → {_day(getattr(planned, name))}"
        for name, label in LABELS.items()
        if getattr(case, name) != getattr(planned, name)
    )


@dataclass(frozen=True, slots=True)
class Change:
    reference: str
    changes: tuple[str, ...]


def _planned_for(services: Services, case: Case) -> Planned:
    return plan(
        services.calendar,
        sla_for(services.config, case.service_area, case.enquiry_type),
        case.received_at,
        paused_working_days=case.paused_working_days,
        extended_due=case.extended_due,
        reset=reset_of(case),
    )


def _apply(
    session: Session, case: Case, planned: Planned, *, why: str, actor: str, now: datetime
) -> Change | None:
    changes = differences(case, planned)
    if not changes:
        return None
    dropped = case.extended_due is not None and planned.extended_due is None
    case.acknowledge_due = planned.acknowledge_due
    case.response_due = planned.response_due
    case.extended_due = planned.extended_due
    if dropped:
        case.extension_reason = None
    case.updated_at = now
    session.add(case)
    session.flush()
    detail = f"deadlines recounted ({why}): " + "; ".join(changes)
    if dropped:
        detail += " (the extension no longer extends the deadline, so it is dropped)"
    add_event(session, case.id, RECOMPUTED_KIND, detail, actor=actor)
    log.info("deadlines recounted", extra={"case": case.reference, "why": why})
    return Change(case.reference, changes)


def follow_sla(
    session: Session, services: Services, case: Case, *, actor: str, now: datetime
) -> Change | None:
    """After a change of service area or enquiry type: an open case's deadlines follow its
    new SLA (a reset deadline stays as reset; completed and closed cases keep theirs)."""
    if case.status not in OPEN:
        return None
    assert case.id is not None
    planned = _planned_for(services, case)
    return _apply(
        session, case, planned, why="service area or enquiry type changed", actor=actor, now=now
    )


def recompute(
    session: Session, services: Services, *, actor: str, now: datetime, dry_run: bool = False
) -> list[Change]:
    """Recount the deadlines of every open case with today's calendar and SLA rules (after a
    closure day or an SLA rule is added). Returns the cases that changed, or would."""
    cases = session.exec(
        select(Case).where(col(Case.status).in_(OPEN)).order_by(col(Case.id))
    ).all()
    changed: list[Change] = []
    for case in cases:
        planned = _planned_for(services, case)
        if dry_run:
            diff = differences(case, planned)
            if diff:
                changed.append(Change(case.reference, diff))
            continue
        done = _apply(session, case, planned, why="calendar recompute", actor=actor, now=now)
        if done is not None:
            changed.append(done)
    return changed


# --- pause and resume -----------------------------------------------------------------


def refuse_unless_open(case: Case, doing: str) -> None:
    """Only an open case's clock can be stopped, restarted or moved on."""
    if case.status == CaseStatus.CLOSED:
        raise UserError(f"{case.reference} is closed; a closed case cannot be {doing}")
    if case.status == CaseStatus.COMPLETED:
        raise UserError(
            f"{case.reference} is completed; only an open case can be {doing} "
            f"(`mailbridge case reopen {case.reference}` first)"
        )


@dataclass(frozen=True, slots=True)
class Paused:
    reference: str
    since: date
    reason: str


def pause(
    session: Session, services: Services, case: Case, reason: str, *, actor: str, now: datetime
) -> Paused:
    """Stop the case's clock (awaiting information from the councillor, say)."""
    why = " ".join(reason.split())
    if not why:
        raise UserError('--reason is empty: say why the clock stops, e.g. --reason "awaiting '
                        'information from the councillor"')  # fmt: skip
    if len(why) > 500:
        raise UserError("--reason is longer than 500 characters")
    refuse_unless_open(case, "paused")
    if case.paused_at is not None:
        raise UserError(
            f"{case.reference} is already paused since "
            f"{services.calendar.local_date(case.paused_at).isoformat()} ({case.pause_reason}); "
            f"`mailbridge case resume {case.reference}` restarts its clock"
        )
    case.paused_at = now
    case.pause_reason = why
    case.updated_at = now
    session.add(case)
    session.flush()
    since = services.calendar.local_date(now)
    due = case.extended_due or case.response_due
    add_event(
        session,
        case.id,
        "paused",
        f"clock paused on {since.isoformat()}: {why} (deadline {due.isoformat()} moves on by "
        "the working days it stays paused)",
        actor=actor,
    )
    log.info("case paused", extra={"case": case.reference})
    return Paused(case.reference, since, why)


@dataclass(frozen=True, slots=True)
class Resumed:
    reference: str
    paused_days: int  # this pause
    total_paused_days: int
    response_due: tuple[date, date]  # old, new
    extended_due: tuple[date, date] | None


def resume(
    session: Session, services: Services, case: Case, *, actor: str, now: datetime
) -> Resumed:
    """Restart the clock: the deadlines move on by the working days the case was paused."""
    refuse_unless_open(case, "resumed")
    if case.paused_at is None:
        raise UserError(
            f"{case.reference} is not paused (`mailbridge case pause {case.reference} "
            '--reason "..."` stops its clock)'
        )
    return _end_pause(session, services, case, actor=actor, now=now, why="clock resumed")


def settle_pause(
    session: Session, services: Services, case: Case, *, actor: str, now: datetime
) -> Resumed | None:
    """A case completed or closed while paused: end the pause as a resume would, so its
    deadline (and the reports' on-time count) includes the paused days. None if not paused."""
    if case.paused_at is None:
        return None
    return _end_pause(
        session, services, case, actor=actor, now=now, why="pause ended as the case closed"
    )


def _end_pause(
    session: Session, services: Services, case: Case, *, actor: str, now: datetime, why: str
) -> Resumed:
    assert case.paused_at is not None
    cal = services.calendar
    days = max(0, cal.working_days_between(cal.local_date(case.paused_at), cal.local_date(now)))
    old_response, old_extended = case.response_due, case.extended_due
    case.response_due = cal.add_working_days(old_response, days)
    if old_extended is not None:
        case.extended_due = cal.add_working_days(old_extended, days)
    case.paused_working_days += days
    case.paused_at = None
    case.pause_reason = None
    case.updated_at = now
    session.add(case)
    session.flush()
    moved = f"reply due {old_response.isoformat()} → {case.response_due.isoformat()}"
    if old_extended is not None and case.extended_due is not None:
        moved += f"; extended to {old_extended.isoformat()} → {case.extended_due.isoformat()}"
    add_event(
        session,
        case.id,
        "resumed",
        f"{why} after {days} working days paused ({case.paused_working_days} in all): " + moved,
        actor=actor,
    )
    log.info("case resumed", extra={"case": case.reference, "paused_days": days})
    return Resumed(
        case.reference,
        days,
        case.paused_working_days,
        (old_response, case.response_due),
        (old_extended, case.extended_due) if old_extended and case.extended_due else None,
    )


# --- extension ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extended:
    reference: str
    days: int
    old: date  # the deadline in force before
    new: date  # extended_due now
    reason: str | None


def extend(
    session: Session,
    services: Services,
    case: Case,
    days: int,
    reason: str | None,
    *,
    actor: str,
    now: datetime,
    message_id: int | None = None,
) -> Extended:
    """Move the deadline in force on by `days` working days (an officer's `#extend N`, a
    coordinator's `case extend`): an extension never brings a deadline forward, and the
    original `response_due` stays for the reports."""
    if days < 1:
        raise UserError("--days must be 1 or more working days")
    why = " ".join((reason or "").split())[:500] or None
    current = case.extended_due or case.response_due
    case.extended_due = services.calendar.add_working_days(current, days)
    case.extension_reason = why
    case.updated_at = now
    session.add(case)
    session.flush()
    add_event(
        session,
        case.id,
        "deadline_extended",
        f"deadline extended by {days} working days to {case.extended_due.isoformat()} "
        f"(the original, {case.response_due.isoformat()}, stays in reports)"
        + (f": {why}" if why else ""),
        actor=actor,
        message_id=message_id,
    )
    log.info("deadline extended", extra={"case": case.reference, "days": days})
    return Extended(case.reference, days, current, case.extended_due, why)


# --- reset on reassignment ------------------------------------------------------------


def reset_deadline(
    session: Session, services: Services, case: Case, *, actor: str, now: datetime
) -> str:
    """The SLA's response days counted afresh from today (reassignment with
    --reset-deadline); the extension is cleared. Returns the event's detail."""
    today = services.calendar.local_date(now)
    sla = sla_for(services.config, case.service_area, case.enquiry_type)
    reset = Reset(today, sla.response_days)
    old_response, old_extended = case.response_due, case.extended_due
    case.response_due = services.calendar.add_working_days(today, sla.response_days)
    case.extended_due = None
    case.extension_reason = None
    case.paused_working_days = 0
    case.deadline_reset_on = reset.day
    case.deadline_reset_days = reset.response_days
    if case.paused_at is not None:
        case.paused_at = now
    case.updated_at = now
    session.add(case)
    session.flush()
    detail = (
        f"deadline reset: reply due {old_response.isoformat()} → "
        f"{case.response_due.isoformat()} {reset.mark()}"
    )
    if old_extended is not None:
        detail += f"; extension to {old_extended.isoformat()} cleared"
    add_event(session, case.id, RESET_KIND, detail, actor=actor)
    log.info("deadline reset", extra={"case": case.reference})
    return detail
