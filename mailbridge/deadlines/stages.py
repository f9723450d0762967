"""Each open case's next stage moment: when the clock next has something to do for it.

A tick (deadlines/run.py) reads only the cases whose `next_stage_at` has come, so its work
follows what is due, not how many cases are open. The moment is kept by three rules:

* **a change** to anything the stages depend on (status, lead officer, pause, the deadlines,
  service area or enquiry type) sets it in the same flush, whichever door made the change
  (an email, the console, the command line, the API): a session event, so no change can
  forget it. It is the moment of the earliest stage whose key is not done, or None while
  the case can have none (completed, closed, paused, no lead officer), counted on the row
  as the flush leaves it (read again under lock: another change may have committed since
  the case was read) and on the rules the clock counts on: a process on other rules (a
  console started before the config changed) marks the case due at once instead;
* **a tick** that has dealt with a case sets it to the case's first stage still to come;
* **a new basis** (SLA rules, the calendar, the sending hours: the config, read at start)
  marks every running case due now, and the ticks count them again in batches.

The moment is never later than the first time the planner (plan.py) would have something
for the case, so a tick misses nothing; it may be earlier (a stage settled by a later one,
say), which costs one look and puts it right.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, event, inspect, or_, update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from mailbridge.config import Config
from mailbridge.deadlines import plan
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.deadlines.policy import sla_for
from mailbridge.store.db import insert_or_skip, transaction
from mailbridge.store.models import Case, ScheduledSend, Setting, utcnow

log = logging.getLogger(__name__)

OPTION = "mailbridge_stages"  # the engine's execution option that carries the Basis
BASIS = "clock_basis"  # the Setting that names the basis the moments were counted on
BEFORE = "clock_basis_before"  # the basis before it (follow_basis: rules taken back)
# What the stages depend on: a change to any of these moves the case's moment.
WATCHED = (
    "status",
    "lead_officer_id",
    "paused_at",
    "extended_due",
    "response_due",
    "service_area",
    "enquiry_type",
)
# "Look at this case at the next tick", when a session has no basis to count with.
AT_ONCE = datetime(2000, 1, 1, tzinfo=UTC)
_CASES = Case.__table__  # type: ignore[attr-defined]
_SETTINGS = Setting.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Basis:
    """What the stage moments are counted with: the council's config and calendar."""

    config: Config
    calendar: WorkingCalendar
    _print: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schedule = self.config.schedule
        facts = {
            "sla": self.config.sla.model_dump(mode="json"),
            "hours": [schedule.send_at, schedule.send_until],
            "calendar": self.calendar.rules(),
        }
        digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "_print", digest)  # once: every change's flush asks

    def fingerprint(self) -> str:
        """Changes when any rule that places a stage in time changes."""
        return self._print


@dataclass(frozen=True, slots=True)
class Facts:
    """What a case's stages depend on (WATCHED), as its row will be once a flush is done."""

    reference: str
    status: str
    lead_officer_id: int | None
    paused_at: datetime | None
    extended_due: date | None
    response_due: date
    service_area: str | None
    enquiry_type: str | None

    @property
    def deadline(self) -> date:
        return self.extended_due or self.response_due


def watch(engine: Engine, basis: Basis) -> None:
    """Every session on the engine keeps its cases' moments with this basis from now on."""
    engine.update_execution_options(**{OPTION: basis})


def running_clause() -> ColumnElement[bool]:
    """plan.running in SQL: the cases the clock can have anything for."""
    return (
        col(Case.status).in_(plan.OPEN)
        & col(Case.lead_officer_id).is_not(None)
        & col(Case.paused_at).is_(None)
    )


def _stages(basis: Basis, case: Facts | plan.CaseClock) -> list[tuple[str, datetime]]:
    sla = sla_for(basis.config, case.service_area, case.enquiry_type)
    return plan.stages(basis.config, basis.calendar, case.reference, case.deadline, sla)


def after_change(session: Session, basis: Basis | None, case: Facts) -> datetime | None:
    """The moment of the case's earliest stage whose key is not done (see the module); at
    once when there is no basis to count it on."""
    if not plan.running(case.status, case.paused_at is not None, case.lead_officer_id is not None):
        return None
    if basis is None:
        return AT_ONCE
    staged = _stages(basis, case)
    if not staged:
        return None
    done = set(
        session.exec(
            select(ScheduledSend.key).where(col(ScheduledSend.key).in_([k for k, _ in staged]))
        ).all()
    )
    return min((moment for key, moment in staged if key not in done), default=None)


def after_tick(basis: Basis, clock: plan.CaseClock, now: datetime) -> datetime | None:
    """After a tick at `now` dealt with the case: its first stage still to come."""
    if not plan.running(clock.status, clock.paused, clock.lead_officer is not None):
        return None
    return min((moment for _, moment in _stages(basis, clock) if moment > now), default=None)


def set_moments(conn: Connection, moments: Mapping[int, datetime | None]) -> None:
    """Write the tick's moments, one statement per distinct moment (a batch's cases share a
    few mornings), never the case's updated_at: the console reads that as the case's
    version, and the clock changes nothing a person sees."""
    by_moment: dict[datetime | None, list[int]] = {}
    for case_id, moment in moments.items():
        by_moment.setdefault(moment, []).append(case_id)
    for moment, ids in by_moment.items():
        conn.execute(update(_CASES).where(_CASES.c.id.in_(ids)).values(next_stage_at=moment))


def _clock_basis(session: OrmSession) -> Basis | None:
    """The session's basis when the clock counts on the same rules (or none is recorded
    yet), else None: the change then leaves its case to the clock's next tick. A console
    or command started before the config changed, beside a daemon started after, would
    count a later moment than the daemon's planner: a stage never sent."""
    basis: Basis | None = session.connection().get_execution_options().get(OPTION)
    return basis if basis is not None and counted_on(session, basis) else None


def counted_on(session: Session | OrmSession, basis: Basis) -> bool:
    """Whether the moments in the database were counted on `basis` (or none is recorded)."""
    known = (
        session.connection()
        .execute(select(_SETTINGS.c.value).where(_SETTINGS.c.name == BASIS))
        .scalar()
    )
    return known in (None, basis.fingerprint())


def _moved(case: Case) -> bool:
    state = inspect(case)
    return state.pending or any(state.attrs[name].history.has_changes() for name in WATCHED)


def _as_flushed(session: OrmSession, cases: Sequence[Case]) -> list[Facts]:
    """The cases' facts as their rows will be once the flush is done: the session's own
    changes over the rows as committed now, read under lock (PostgreSQL; SQLite's writers
    queue), so a change another transaction committed since this one read a case counts,
    and none can land before this one commits."""
    stored = [c.id for c in cases if not inspect(c).pending]
    rows = (
        {
            row.id: row
            for row in session.connection().execute(
                select(_CASES.c.id, *(_CASES.c[name] for name in WATCHED))
                .where(_CASES.c.id.in_(stored))
                .order_by(_CASES.c.id)  # in the tick's order: no deadlock between them
                .with_for_update()
            )
        }
        if stored
        else {}
    )
    facts = []
    for case in cases:
        values = {name: getattr(case, name) for name in WATCHED}
        row = rows.get(case.id)
        if row is not None:
            state = inspect(case)
            for name in WATCHED:
                if not state.attrs[name].history.has_changes():
                    values[name] = getattr(row, name)
        facts.append(Facts(reference=case.reference, **values))
    return facts


@event.listens_for(OrmSession, "before_flush")
def _follow(session: OrmSession, _context: object, _instances: object) -> None:
    """Any change that moves a case's stages moves its moment, in the change's own flush."""
    cases = [o for o in (*session.new, *session.dirty) if isinstance(o, Case) and _moved(o)]
    if not cases:
        return
    with session.no_autoflush:
        flushed = _as_flushed(session, cases)
        # Asked under the cases' locks: a new basis committed meanwhile (follow_basis) has
        # marked them, and this flush must not put back a moment counted on the old one.
        basis = _clock_basis(session)
        for case, facts in zip(cases, flushed, strict=True):
            case.next_stage_at = after_change(session, basis, facts)  # type: ignore[arg-type]
            # Written even when the session read this value: the row may hold another's.
            flag_modified(case, "next_stage_at")


def follow_basis(engine: Engine, basis: Basis, now: datetime) -> int:
    """When the rules that place stages in time have changed since the moments were counted
    (or were never recorded: the first tick after the upgrade), mark every running case due
    now, so the ticks count its stages again; how many were marked. Rules taken back (the
    basis before the last) are said in the log: processes on different configs sharing the
    database would otherwise mark every running case due again at each of their ticks."""
    value = basis.fingerprint()
    with Session(engine) as session:  # a read: every tick, almost always the same
        known = session.get(Setting, BASIS)
        if known is not None and known.value == value:
            return 0
    with transaction(engine) as session:
        known = session.get(Setting, BASIS)
        if known is not None and known.value == value:
            return 0  # another process did it meanwhile
        before = session.get(Setting, BEFORE)
        back = before is not None and before.value == value
        marked = session.connection().execute(
            update(_CASES)
            .where(
                running_clause(),
                or_(col(Case.next_stage_at).is_(None), col(Case.next_stage_at) > now),
            )
            .values(next_stage_at=now)
        )
        # Two processes starting at once may both get here: each marks (the second finds
        # nothing left to mark) and neither trips on the other's row.
        conn = session.connection()
        kept = {BASIS: value} | ({BEFORE: known.value} if known is not None else {})
        for name, kept_value in kept.items():
            row = {"name": name, "value": kept_value, "updated_at": utcnow()}
            conn.execute(insert_or_skip(_SETTINGS, ("name",), conn.dialect.name), row)
            conn.execute(update(_SETTINGS).where(_SETTINGS.c.name == name).values(row))
    if back:
        log.warning(
            "the clock's rules (SLA, calendar, sending hours) are back to those before the "
            "last change: if this repeats, processes with different configs share the "
            "database, and each change of rules has every running case counted again",
            extra={"cases": marked.rowcount},
        )
    log.info("stage moments to be counted again", extra={"cases": marked.rowcount})
    return int(marked.rowcount)
