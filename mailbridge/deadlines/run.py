"""Sending what plan.py says is due, each item exactly once.

A tick reads only the cases whose next stage moment has come (`case.next_stage_at`, kept by
stages.py), a page at a time in the order of their moments, and plans them with plan.py.
It then deals with them a batch of cases to a transaction: each case's facts are read again
under a lock (a case that changed since is left: its change has set its moment), each due
key is claimed in `scheduled_send` (INSERT ... ON CONFLICT DO NOTHING) and only if this
transaction inserted the row is its mail queued and an event recorded, and each case's
moment moves on to its next stage. A second daemon racing on the same key waits on it until
the first commits, then inserts nothing and moves on; a restart finds the keys done; a kill
mid-batch leaves every key free and every moment as it was. A failing batch is done again a
case at a time, so one bad case holds back only itself. Digests are one transaction each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, update
from sqlmodel import Session, col, select

from mailbridge.cases import facts
from mailbridge.cases.correspondence import thread_for
from mailbridge.cases.records import add_event
from mailbridge.deadlines import digests, overdue, plan, stages
from mailbridge.deadlines.plan import CaseClock, DigestDue, Due, Escalation, Reminder, Stale
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.db import insert_or_skip, rows_later, transaction
from mailbridge.store.models import Case, CaseOfficer, OfficerRole, Person, ScheduledSend

log = logging.getLogger(__name__)

_SENDS = ScheduledSend.__table__  # type: ignore[attr-defined]
CHUNK = 500
PAGE = 1000  # due cases read and planned at a time
BATCH = 200  # cases dealt with in one transaction


@dataclass
class RunReport:
    """What one run did, item by item: (key, outcome) in the order it was done."""

    done: list[tuple[str, str]] = field(default_factory=list)  # queued / withheld / nothing...
    skipped: list[str] = field(default_factory=list)  # stale stages recorded, not mailed
    taken: list[str] = field(default_factory=list)  # another daemon did them first
    moved: list[str] = field(default_factory=list)  # the case changed since; next tick decides
    failed: list[str] = field(default_factory=list)  # rolled back; tried again next tick
    left: int = 0  # digests, and cases whose moment has come, still due when the limit stopped it
    overdue: int = 0  # "overdue" webhooks queued (overdue.py)

    @property
    def queued(self) -> int:
        return sum(1 for _, outcome in self.done if outcome == "queued")


# --- reading the facts -------------------------------------------------------------------


def _clock_query() -> Select[Any]:
    return select(  # columns, not Case: a tick must not load cases' text
        Case.id,
        Case.reference,
        Case.status,
        Person.email,
        Case.service_area,
        Case.directorate,
        Case.enquiry_type,
        Case.extended_due,
        Case.response_due,
        Case.paused_at,
    ).join(Person, col(Person.id) == col(Case.lead_officer_id))


def _clocks(session: Session, rows: Sequence[Any]) -> list[CaseClock]:
    additional: dict[int, list[str]] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), CHUNK):
        for case_id, email in session.exec(
            select(CaseOfficer.case_id, Person.email)
            .join(Person, col(Person.id) == col(CaseOfficer.person_id))
            .where(
                col(CaseOfficer.case_id).in_(ids[start : start + CHUNK]),
                CaseOfficer.role == OfficerRole.ADDITIONAL,
            )
            .order_by(col(CaseOfficer.assigned_at), col(CaseOfficer.person_id))
        ).all():
            additional.setdefault(case_id, []).append(email)
    return [
        CaseClock(
            case_id=r.id,
            reference=r.reference,
            status=r.status,
            lead_officer=r.email,
            additional_officers=tuple(additional.get(r.id, ())),
            service_area=r.service_area,
            directorate=r.directorate,
            enquiry_type=r.enquiry_type,
            deadline=r.extended_due or r.response_due,
            paused=r.paused_at is not None,
        )
        for r in rows
    ]


def case_clocks(
    session: Session, case_ids: Sequence[int], *, lock: bool = False
) -> list[CaseClock]:
    """The schedule's facts of these cases, if open with a lead officer. `lock`: held until
    the transaction ends, so no change lands between what a batch reads and what it writes."""
    query = _clock_query().where(col(Case.id).in_(case_ids), col(Case.status).in_(plan.OPEN))
    if lock:
        query = query.with_for_update(of=Case)
    return _clocks(session, session.exec(query.order_by(col(Case.id))).all())


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a tick has read up to, in the order of the cases' moments."""

    moment: datetime
    case_id: int


def due_clocks(
    session: Session, now: datetime, *, after: Cursor | None = None, limit: int = PAGE
) -> tuple[list[CaseClock], Cursor | None]:
    """The next page of cases whose moment has come (oldest moment first), and where the
    page ends: the index on the moment is all a tick reads in the steady state."""
    moment = col(Case.next_stage_at)
    query = _clock_query().add_columns(moment).where(moment <= now)
    if after is not None:
        query = query.where(
            (moment > after.moment) | ((moment == after.moment) & (col(Case.id) > after.case_id))
        )
    rows = session.exec(query.order_by(moment, col(Case.id)).limit(limit)).all()
    if not rows:
        return [], None
    last = rows[-1]
    return _clocks(session, rows), Cursor(last.next_stage_at, last.id)


def _done_keys(session: Session, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), CHUNK):
        found.update(
            session.exec(
                select(ScheduledSend.key).where(
                    col(ScheduledSend.key).in_(keys[start : start + CHUNK])
                )
            ).all()
        )
    return found


def _done_on(conn: Connection, case_ids: Sequence[int]) -> set[str]:
    """The keys done on these cases: a look-up by case (an index of integers), cheaper than
    one by hundreds of keys, and a case has few."""
    found: set[str] = set()
    for start in range(0, len(case_ids), CHUNK):
        chunk = case_ids[start : start + CHUNK]
        found.update(
            conn.execute(select(_SENDS.c.key).where(_SENDS.c.case_id.in_(chunk))).scalars()
        )
    return found


def _not_done(items: Sequence[Due], done: set[str]) -> list[Due]:
    """The items whose keys are not done. A case whose latest stage is done has nothing stale
    left to record (it settles the older ones, whether or not they were recorded)."""
    settled = {
        i.case.case_id for i in items if i.key in done and not isinstance(i, Stale | DigestDue)
    }
    return [i for i in items if i.key not in done and not _settled(i, settled)]


def _settled(item: Due, settled: set[int]) -> bool:
    return isinstance(item, Stale) and item.case.case_id in settled


def _digests(session: Session, services: Services, now: datetime) -> list[Due]:
    items = plan.digests_due(services.config, services.calendar, now)
    return _not_done(items, _done_keys(session, [i.key for i in items]))


def _cases_due(
    session: Session, services: Services, now: datetime, clocks: Sequence[CaseClock]
) -> list[Due]:
    """What these cases have due at `now` (in sending hours) and not done."""
    items = plan.stages_due(services.config, services.calendar, now, clocks)
    done = _done_on(session.connection(), [c.case_id for c in clocks])
    return _not_done(items, done)


def _running_clocks(session: Session) -> Iterator[list[CaseClock]]:
    """Every running case, a page at a time (by id)."""
    last = 0
    while ids := session.exec(
        select(Case.id)
        .where(stages.running_clause(), col(Case.id) > last)
        .order_by(col(Case.id))
        .limit(PAGE)
    ).all():
        last = ids[-1]  # type: ignore[assignment]
        yield case_clocks(session, ids)  # type: ignore[arg-type]


def pending(services: Services, now: datetime) -> list[Due]:
    """What is due at `now` and not done yet (`schedule show` prints this; sends nothing).
    On rules the moments were not counted on, every running case: the next tick counts
    them all again (stages.follow_basis)."""
    with Session(services.engine) as session:
        out = _digests(session, services, now)
        if not plan.in_sending_hours(services.config, services.calendar, now):
            return out
        if not stages.counted_on(session, _basis(services)):
            for clocks in _running_clocks(session):
                out += _cases_due(session, services, now, clocks)
            return out
        clocks, cursor = due_clocks(session, now)
        while clocks:
            out += _cases_due(session, services, now, clocks)
            clocks, cursor = due_clocks(session, now, after=cursor)
    return out


# --- doing one item ------------------------------------------------------------------------


def _send_row(item: Due, now: datetime) -> dict[str, object]:
    """The `scheduled_send` row that takes an item's key: a mail's as "queued" (`_record`
    writes any other outcome), a stale stage's as "skipped"."""
    return {
        "key": item.key,
        "kind": item.kind if not isinstance(item, Stale) else item.key.split(":", 1)[0],
        "case_id": None if isinstance(item, DigestDue) else item.case.case_id,
        "outcome": "skipped" if isinstance(item, Stale) else "queued",
        "done_at": now,
    }


def _claim(conn: Connection, item: Due, now: datetime) -> bool:
    """Take the item's key; False when it was done already (by another daemon)."""
    result = conn.execute(
        insert_or_skip(_SENDS, ("key",), conn.dialect.name, returning="key"), _send_row(item, now)
    )
    return result.scalar() is not None  # RETURNING: a row only when this insert made it


def _claim_all(
    conn: Connection, items: Sequence[Due], now: datetime
) -> tuple[list[Due], list[str]]:
    """Take a batch's keys in one statement; (the items this batch took, the keys done
    already). Under the batch's locks on its cases nobody else takes them meanwhile (a
    second daemon waits on those locks, then finds the keys done here). A mail's key is
    taken as "queued", a stale stage's as "skipped"; `_record` writes any other outcome."""
    ids = list(dict.fromkeys(item.case.case_id for item in items))  # type: ignore[union-attr]
    done = _done_on(conn, ids)
    mine = [item for item in items if item.key not in done]
    if mine:
        conn.execute(
            insert_or_skip(_SENDS, ("key",), conn.dialect.name),
            [_send_row(item, now) for item in mine],
        )
    return mine, sorted(item.key for item in items if item.key in done)


def _record(session: Session, key: str, outcome: str) -> None:
    """The claimed key's outcome, when it is not "queued" (claimed in this transaction)."""
    if outcome != "queued":
        session.connection().execute(
            update(_SENDS).where(_SENDS.c.key == key).values(outcome=outcome)
        )


def _names(session: Session, addresses: Sequence[str]) -> dict[str, str]:
    """People's names by address, remembered for the session: a batch's escalations tell
    the same coordinators and heads again and again."""
    known: dict[str, str] = session.info.setdefault("names", {})
    missing = [a for a in addresses if a not in known]
    if missing:
        known.update({a: a for a in missing})
        known.update(
            session.exec(
                select(Person.email, Person.name).where(col(Person.email).in_(missing))
            ).all()
        )
    return known


def _still_due(session: Session, item: Reminder | Escalation) -> bool:
    """The case has not moved on (completed, paused, extended, reassigned) since planning."""
    return case_clocks(session, [item.case.case_id]) == [item.case]


def _case_context(session: Session, case: Case) -> dict[str, object]:
    return {
        "case": case,
        "member": session.get(Person, case.member_id),
        "lead": session.get(Person, case.lead_officer_id) if case.lead_officer_id else None,
        "due": case.extended_due or case.response_due,
    }


def _remind(session: Session, services: Services, item: Reminder) -> str:
    case = session.get(Case, item.case.case_id)
    assert case is not None
    queued = queue.queue_mail(
        session,
        services,
        kind="reminder",
        template="reminder",
        to=item.to,
        thread=thread_for(session, case),
        context={**_case_context(session, case), "days_left": item.days_left},
        idempotency_key=item.key,
    )
    when = "due today" if item.days_left == 0 else f"{item.days_left} working days left"
    add_event(
        session,
        case.id,
        "reminder_sent" if queued else "reminder_withheld",
        f"deadline {item.case.deadline.isoformat()}, {when}",
    )
    return "queued" if queued else "withheld"


def _escalate(session: Session, services: Services, item: Escalation) -> str:
    case = session.get(Case, item.case.case_id)
    assert case is not None
    if not (item.to or item.cc):
        add_event(session, case.id, "escalation_unsent", f"{item.key}: nobody to tell")
        return "nothing_to_send"
    names = _names(session, item.to + item.cc)
    queued = queue.queue_mail(
        session,
        services,
        kind="escalation",
        template="escalation",
        to=item.to,
        cc=item.cc,
        thread=thread_for(session, case),
        context={
            **_case_context(session, case),
            "days_over": item.days_over,
            "step": item.step,
            "told": [(names.get(a, a), a) for a in item.to + item.cc],
            "unresolved": item.unresolved,
        },
        idempotency_key=item.key,
    )
    add_event(
        session,
        case.id,
        "escalated" if queued else "escalation_withheld",
        f"{item.days_over} working days past the deadline {item.case.deadline.isoformat()}; "
        f"step after {item.step.after_working_days}: " + ", ".join(item.to + item.cc),
    )
    return "queued" if queued else "withheld"


def _digest(session: Session, services: Services, item: DigestDue) -> str:
    if item.kind == "coordinator_digest":
        one = digests.coordinator_digest(session, services, item.day)
        mails = [one] if one is not None else []
    elif item.kind == "member_digest":
        mails = digests.member_digests(session, services, item.day)
    else:
        mails = digests.management_summaries(session, services, item.day)
    if not mails:
        return "nothing_to_send"
    queued = [
        queue.queue_mail(
            session,
            services,
            kind=mail.kind,
            template=mail.template,
            to=mail.to,
            context=mail.context,
            idempotency_key=mail.key,
        )
        for mail in mails
    ]
    return "queued" if any(queued) else "withheld"


def _do(services: Services, item: Due, now: datetime) -> str | None:
    """One item in one transaction; None when another daemon did it first."""
    with transaction(services.engine) as session:
        if isinstance(item, Reminder | Escalation) and not _still_due(session, item):
            return "moved"
        if not _claim(session.connection(), item, now):
            return None
        if isinstance(item, Stale):
            return "skipped"
        if isinstance(item, Reminder):
            outcome = _remind(session, services, item)
        elif isinstance(item, Escalation):
            outcome = _escalate(session, services, item)
        else:
            outcome = _digest(session, services, item)
        _record(session, item.key, outcome)
        return outcome


def _basis(services: Services) -> stages.Basis:
    return stages.Basis(services.config, services.calendar)


@dataclass
class _Budget:
    """The mails a call may still queue (None: no limit)."""

    room: int | None

    @property
    def spent(self) -> bool:
        return self.room is not None and self.room <= 0

    def spend(self, count: int) -> None:
        if self.room is not None:
            self.room -= count


def _batch(
    services: Services,
    now: datetime,
    clocks: Sequence[CaseClock],
    items: dict[int, list[Due]],
    budget: _Budget,
) -> tuple[RunReport, int, bool]:
    """Cases of one page in one transaction: their stale stages recorded, their mail queued,
    their next moments set, all or nothing (a kill mid-way leaves every key free and every
    moment as it was). Returns what was done, the mails queued, and whether the budget
    stopped it."""
    part, sent, stopped = RunReport(), 0, False
    basis = _basis(services)
    # The batch's events and outbox rows go in one statement per table at its end.
    with transaction(services.engine) as session, rows_later(session):
        conn = session.connection()
        ids = [c.case_id for c in clocks]
        fresh = {c.case_id: c for c in case_clocks(session, ids, lock=True)}
        # The cases and their people read once for the batch, not once per mail (held here:
        # the session keeps only what something refers to).
        held: list[object] = list(session.exec(select(Case).where(col(Case.id).in_(ids))).all())
        people = {c.member_id for c in held} | {c.lead_officer_id for c in held}  # type: ignore[attr-defined]
        held += session.exec(select(Person).where(col(Person.id).in_(people - {None}))).all()
        facts.remember_roots(session, ids)
        moments: dict[int, datetime | None] = {}
        todo: list[Due] = []
        for clock in clocks:
            due = items.get(clock.case_id, [])
            if fresh.get(clock.case_id) != clock:  # its change has set its moment
                part.moved.extend(i.key for i in due if not isinstance(i, Stale))
                if clock.case_id not in fresh:  # no longer running: nothing more to look at
                    moments[clock.case_id] = None
                continue
            live = sum(1 for i in due if not isinstance(i, Stale))
            if live and budget.room is not None and sent + live > budget.room:
                stopped = True
                break
            sent += live
            todo += due
            moments[clock.case_id] = stages.after_tick(basis, clock, now)
        mine, part.taken = _claim_all(conn, todo, now)
        taken = set(part.taken)
        sent -= sum(1 for i in todo if not isinstance(i, Stale) and i.key in taken)
        for item in mine:
            if isinstance(item, Stale):
                part.skipped.append(item.key)
                continue
            outcome = (
                _remind(session, services, item)
                if isinstance(item, Reminder)
                else _escalate(session, services, item)  # type: ignore[arg-type]
            )
            _record(session, item.key, outcome)
            part.done.append((item.key, outcome))
        session.flush()
        stages.set_moments(conn, moments)
    return part, sent, stopped


def _run_cases(
    services: Services,
    now: datetime,
    clocks: Sequence[CaseClock],
    items: dict[int, list[Due]],
    budget: _Budget,
    report: RunReport,
) -> bool:
    """One batch, or, when it fails, each of its cases alone, so one bad case holds back
    only itself (its keys stay free and its moment stays: the next tick tries again).
    False once the budget stopped it."""
    try:
        part, sent, stopped = _batch(services, now, clocks, items, budget)
    except Exception:
        if len(clocks) > 1:
            return all(
                _run_cases(services, now, [clock], items, budget, report) for clock in clocks
            )
        reference = clocks[0].reference
        log.exception("scheduled send failed", extra={"case": reference})
        report.failed.extend(i.key for i in items.get(clocks[0].case_id, []))
        return True
    budget.spend(sent)
    for name in ("done", "skipped", "taken", "moved"):
        getattr(report, name).extend(getattr(part, name))
    for key, outcome in part.done:
        log.info("scheduled send", extra={"key": key, "outcome": outcome})
    return not stopped


def _due_count(services: Services, now: datetime) -> int:
    with Session(services.engine) as session:
        return session.exec(select(func.count()).where(col(Case.next_stage_at) <= now)).one()


def run_due(services: Services, now: datetime, *, limit: int | None = None) -> RunReport:
    """Send what is due at `now` (aware), once; one case's failure stops only that case.

    Reads only the cases whose next stage moment has come (stages.py), a page at a time, and
    deals with them in transactions of a few hundred, so the first tick after an upgrade or
    a long outage takes minutes, not hours. `limit` caps the mails one call queues (the
    daemon's tick, so such a morning never holds up incoming mail for long); the rest stay
    due and the next call takes them.
    """
    report = RunReport()
    try:
        report.overdue = overdue.queue_overdue(services, services.calendar.local_date(now))
    except Exception:  # the webhooks wait for the next tick; the mail goes on
        log.exception("queueing overdue webhooks failed")
    stages.follow_basis(services.engine, _basis(services), now)
    budget = _Budget(limit)
    with Session(services.engine) as session:
        digests_due = _digests(session, services, now)
    for item in digests_due:
        if budget.spent:
            report.left += 1
            continue
        try:
            outcome = _do(services, item, now)
        except Exception:  # one bad item must not stop the others
            log.exception("scheduled send failed", extra={"key": item.key})
            report.failed.append(item.key)
            continue
        budget.spend(1)
        if outcome is None:
            report.taken.append(item.key)
        else:
            report.done.append((item.key, outcome))
            log.info("scheduled send", extra={"key": item.key, "outcome": outcome})
    if not plan.in_sending_hours(services.config, services.calendar, now):
        return report
    cursor: Cursor | None = None
    while not budget.spent:
        with Session(services.engine) as session:
            clocks, cursor = due_clocks(session, now, after=cursor)
            if not clocks:
                return report
            items: dict[int, list[Due]] = {}
            for item in _cases_due(session, services, now, clocks):
                items.setdefault(item.case.case_id, []).append(item)  # type: ignore[union-attr]
        for start in range(0, len(clocks), BATCH):
            if not _run_cases(services, now, clocks[start : start + BATCH], items, budget, report):
                report.left += _due_count(services, now)
                return report
    report.left += _due_count(services, now)
    return report
