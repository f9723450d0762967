"""What routing needs to know about cases (`CaseFacts`), read with a few queries; no decisions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.models import Case, CaseMember, CaseOfficer, Direction, Message, OfficerRole


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What routing needs to know about a case, read by the caller."""

    id: int
    reference: str
    status: str
    member_id: int
    submitter_id: int
    lead_officer_id: int | None = None
    additional_officer_ids: frozenset[int] = field(default_factory=frozenset)
    completed_on: date | None = None
    working_days_since_completed: int | None = None
    other_member_ids: frozenset[int] = field(default_factory=frozenset)  # linked members
    merged_into_id: int | None = None  # closed by merging: mail on it belongs to that case
    converted_to: str | None = None  # closed by conversion (complaint, service request)


def case_ids_for_message_ids(session: Session, message_ids: Iterable[str]) -> dict[str, int]:
    """Stored Message-IDs (ours and received) that belong to a case. A Message-ID that
    another email reused keeps pointing at the case of the first message stored with it."""
    wanted = sorted(set(message_ids))
    if not wanted:
        return {}
    rows = session.exec(
        select(Message.message_id, Message.case_id)
        .where(col(Message.message_id).in_(wanted), col(Message.case_id).is_not(None))
        .order_by(col(Message.id))
    ).all()
    found: dict[str, int] = {}
    for mid, case_id in rows:
        if mid and case_id:
            found.setdefault(mid, case_id)
    return found


def load_cases(
    session: Session,
    *,
    ids: Iterable[int] = (),
    references: Iterable[str] = (),
    calendar: WorkingCalendar,
    today: date,
) -> list[CaseFacts]:
    id_list, ref_list = sorted(set(ids)), sorted(set(references))
    if not id_list and not ref_list:
        return []
    query = select(Case)
    if id_list and ref_list:
        query = query.where(col(Case.id).in_(id_list) | col(Case.reference).in_(ref_list))
    elif id_list:
        query = query.where(col(Case.id).in_(id_list))
    else:
        query = query.where(col(Case.reference).in_(ref_list))
    cases = session.exec(query).all()
    if not cases:
        return []
    officers: dict[int, set[int]] = {}
    for case_id, person_id, role in session.exec(
        select(CaseOfficer.case_id, CaseOfficer.person_id, CaseOfficer.role).where(
            col(CaseOfficer.case_id).in_([c.id for c in cases])
        )
    ).all():
        if role == OfficerRole.ADDITIONAL:
            officers.setdefault(case_id, set()).add(person_id)
    members: dict[int, set[int]] = {}
    for case_id, person_id in session.exec(
        select(CaseMember.case_id, CaseMember.person_id).where(
            col(CaseMember.case_id).in_([c.id for c in cases])
        )
    ).all():
        members.setdefault(case_id, set()).add(person_id)
    facts = []
    for case in cases:
        assert case.id is not None
        completed_on = calendar.local_date(case.completed_at) if case.completed_at else None
        facts.append(
            CaseFacts(
                id=case.id,
                reference=case.reference,
                status=case.status,
                member_id=case.member_id,
                submitter_id=case.submitter_id,
                lead_officer_id=case.lead_officer_id,
                additional_officer_ids=frozenset(officers.get(case.id, ())),
                completed_on=completed_on,
                working_days_since_completed=(
                    calendar.working_days_between(completed_on, today) if completed_on else None
                ),
                other_member_ids=frozenset(members.get(case.id, ())),
                merged_into_id=case.merged_into_id,
                converted_to=case.converted_to,
            )
        )
    return facts


_ROOT = (
    select(Message.message_id)
    .where(
        Message.case_id == bindparam("case_id"),
        Message.direction == Direction.IN,
        col(Message.message_id).is_not(None),
    )
    .order_by(col(Message.id))
    .limit(1)
)


_ROOTS = "mailbridge.roots"


def remember_roots(session: Session, case_ids: Sequence[int]) -> None:
    """Read the roots of many cases in one query, for the rest of the session: a batch of
    scheduled mail threads on hundreds of cases and adds no member's email to any."""
    roots: dict[int, str | None] = dict.fromkeys(case_ids)
    rows = session.connection().execute(
        select(Message.case_id, Message.message_id)
        .where(
            col(Message.case_id).in_(case_ids),
            Message.direction == Direction.IN,
            col(Message.message_id).is_not(None),
        )
        .order_by(col(Message.id))
    )
    for case_id, message_id in rows:
        roots[case_id] = roots[case_id] or message_id
    session.info[_ROOTS] = roots


def root_message_id(session: Session, case_id: int) -> str | None:
    """The Message-ID of the member's first email on the case: every reply references it."""
    known: dict[int, str | None] = session.info.get(_ROOTS, {})
    if case_id in known:
        return known[case_id]
    return session.connection().execute(_ROOT, {"case_id": case_id}).scalar()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An email we sent, as a delivery report that quotes it needs it."""

    case_id: int | None
    recipients: frozenset[str]  # lower case


def outgoing(session: Session, message_id: str | None) -> Outgoing | None:
    """The email of ours a bounce names, or None when we sent no such email."""
    if not message_id:
        return None
    row = session.exec(
        select(Message.case_id, Message.recipients).where(
            Message.message_id == message_id, Message.direction == Direction.OUT
        )
    ).first()
    if row is None:
        return None
    case_id, recipients = row
    return Outgoing(
        case_id, frozenset(r.strip().lower() for r in (recipients or "").split(",") if r.strip())
    )
