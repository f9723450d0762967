"""Sending what plan.py says is due, each item exactly once.

Each due item is one transaction: claim its key in `scheduled_send` (INSERT ... ON CONFLICT
DO NOTHING), and only if this transaction inserted the row, queue its mail in the outbox and
record an event on the case. A second daemon racing on the same key waits on the unique key
until the first commits, then inserts nothing and moves on; a restart finds the key done.
A failing item rolls back alone (its key stays free, so the next tick tries again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection
from sqlmodel import Session, col, select

from mailbridge.cases.correspondence import thread_for
from mailbridge.cases.records import add_event
from mailbridge.deadlines import digests, overdue, plan
from mailbridge.deadlines.plan import CaseClock, DigestDue, Due, Escalation, Reminder, Stale
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.db import insert_or_skip, transaction
from mailbridge.store.models import Case, CaseOfficer, OfficerRole, Person, ScheduledSend

log = logging.getLogger(__name__)

_SENDS = ScheduledSend.__table__  # type: ignore[attr-defined]
CHUNK = 500


@dataclass
class RunReport:
    """What one run did, item by item: (key, outcome) in the order it was done."""

    done: list[tuple[str, str]] = field(default_factory=list)  # queued / withheld / nothing...
    skipped: list[str] = field(default_factory=list)  # stale stages recorded, not mailed
    taken: list[str] = field(default_factory=list)  # another daemon did them first
    moved: list[str] = field(default_factory=list)  # the case changed since; next tick decides
    failed: list[str] = field(default_factory=list)  # rolled back; tried again next tick
    left: int = 0  # due but over the call's limit: the next call takes them
    overdue: int = 0  # "overdue" webhooks queued (overdue.py)

    @property
    def queued(self) -> int:
        return sum(1 for _, outcome in self.done if outcome == "queued")


# --- reading the facts -------------------------------------------------------------------


def case_clocks(session: Session, case_ids: Sequence[int] | None = None) -> list[CaseClock]:
    """The schedule's facts of every open case with a lead officer (or of `case_ids`)."""
    query = (
        select(  # columns, not Case: a tick must not load every open case's text
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
        )
        .join(Person, col(Person.id) == col(Case.lead_officer_id))
        .where(col(Case.status).in_(plan.OPEN))
    )
    if case_ids is not None:
        query = query.where(col(Case.id).in_(case_ids))
    rows = session.exec(query.order_by(col(Case.id))).all()
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


def pending(services: Services, now: datetime) -> list[Due]:
    """What is due at `now` and not done yet (`schedule show` prints this; sends nothing)."""
    cfg, calendar = services.config, services.calendar
    with Session(services.engine) as session:
        clocks = case_clocks(session) if plan.in_sending_hours(cfg, calendar, now) else []
        items = plan.due(cfg, calendar, now, clocks)
        live = [i for i in items if not isinstance(i, Stale)]
        done = _done_keys(session, [i.key for i in live])
        # A case whose latest stage is done has nothing stale left to record: look up the
        # stale keys only of the others (in the steady state, none), not every tick for all.
        settled = {i.case.case_id for i in live if i.key in done and not isinstance(i, DigestDue)}
        stale = [i for i in items if isinstance(i, Stale) and i.case.case_id not in settled]
        done |= _done_keys(session, [i.key for i in stale])
    return [i for i in items if i.key not in done and not _settled(i, settled)]


def _settled(item: Due, settled: set[int]) -> bool:
    return isinstance(item, Stale) and item.case.case_id in settled


# --- doing one item ------------------------------------------------------------------------


def _claim(conn: Connection, item: Due, now: datetime) -> bool:
    case_id = None if isinstance(item, DigestDue) else item.case.case_id
    kind = item.kind if not isinstance(item, Stale) else item.key.split(":", 1)[0]
    result = conn.execute(
        insert_or_skip(_SENDS, ("key",), conn.dialect.name, returning="key"),
        {
            "key": item.key,
            "kind": kind,
            "case_id": case_id,
            "outcome": "skipped" if isinstance(item, Stale) else "claimed",
            "done_at": now,
        },
    )
    return result.scalar() is not None  # RETURNING: a row only when this insert made it


def _record(session: Session, key: str, outcome: str) -> None:
    row = session.get(ScheduledSend, key)
    assert row is not None  # claimed in this transaction
    row.outcome = outcome
    session.add(row)


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
    names = dict(
        session.exec(
            select(Person.email, Person.name).where(col(Person.email).in_(item.to + item.cc))
        ).all()
    )
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


def _skip_stale(services: Services, stale: list[Stale], now: datetime, report: RunReport) -> None:
    """Record stale stages as skipped, many to a transaction: they send nothing, and the first
    tick after an upgrade or a long outage can find thousands of them."""
    for start in range(0, len(stale), CHUNK):
        chunk = stale[start : start + CHUNK]
        skipped: list[str] = []
        taken: list[str] = []
        try:
            with transaction(services.engine) as session:
                conn = session.connection()
                for item in chunk:
                    (skipped if _claim(conn, item, now) else taken).append(item.key)
        except Exception:  # the next tick tries them again
            log.exception("recording skipped stages failed", extra={"count": len(chunk)})
            report.failed.extend(item.key for item in chunk)
            continue
        report.skipped.extend(skipped)
        report.taken.extend(taken)


def run_due(services: Services, now: datetime, *, limit: int | None = None) -> RunReport:
    """Send what is due at `now` (aware), once; one item's failure stops only that item.

    `limit` caps the mails one call queues (the daemon's tick, so a first morning after an
    upgrade or a long outage never holds up incoming mail for long); the rest stay due and
    the next call takes them. Stale stages are recorded whatever the limit: they send nothing.
    """
    report = RunReport()
    try:
        report.overdue = overdue.queue_overdue(services, services.calendar.local_date(now))
    except Exception:  # the webhooks wait for the next tick; the mail goes on
        log.exception("queueing overdue webhooks failed")
    items = pending(services, now)
    _skip_stale(services, [i for i in items if isinstance(i, Stale)], now, report)
    live = [i for i in items if not isinstance(i, Stale)]
    if limit is not None and len(live) > limit:
        report.left = len(live) - limit
        live = live[:limit]
    for item in live:
        reference = None if isinstance(item, DigestDue) else item.case.reference
        try:
            outcome = _do(services, item, now)
        except Exception:  # one bad item must not stop the others
            log.exception("scheduled send failed", extra={"key": item.key, "case": reference})
            report.failed.append(item.key)
            continue
        if outcome is None:
            report.taken.append(item.key)
        elif outcome == "skipped":
            report.skipped.append(item.key)
        elif outcome == "moved":
            report.moved.append(item.key)
        else:
            report.done.append((item.key, outcome))
            log.info(
                "scheduled send",
                extra={"key": item.key, "case": reference, "outcome": outcome},
            )
    return report
