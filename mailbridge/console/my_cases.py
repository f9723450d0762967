"""An officer's own cases ("My cases"): those they lead or are an additional officer on
(cases/permissions.py `officer_cases_clause`, the one answer to who sees what), what needs
them first at the top.

The order: overdue first, then the other open cases, then completed and closed ones; within
each, the deadline in force (an extension, else the original), soonest first. One page is
one SELECT with LIMIT/OFFSET, and the count one more: never a query per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import case, func
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from mailbridge.cases.permissions import officer_cases_clause
from mailbridge.console.filters import OPEN, effective_due, overdue_clause
from mailbridge.store.models import Case, Person


@dataclass(frozen=True, slots=True)
class MyCase:
    """One case as the officer's list shows it."""

    reference: str
    subject: str
    member: str
    service_area: str | None
    status: str
    deadline: date  # the one in force
    extended: bool
    role: str  # "lead" or "additional"
    overdue: bool
    paused: bool
    chased: int


@dataclass(frozen=True, slots=True)
class MyCases:
    rows: list[MyCase]
    total: int


_MEMBER = aliased(Person, name="member")


def my_cases(
    session: Session,
    officer_id: int,
    today: date,
    *,
    status: str | None = None,
    overdue: bool = False,
    page: int = 1,
    size: int = 50,
) -> MyCases:
    """One page of the officer's cases, and how many there are (`status` one of
    CaseStatus's values, already checked)."""
    where = [officer_cases_clause(officer_id)]
    if status:
        where.append(Case.status == status)
    if overdue:
        where.append(overdue_clause(today))
    late = overdue_clause(today)
    rank = case((late, 0), (col(Case.status).in_(OPEN), 1), else_=2)
    query = (
        select(
            Case.reference,
            Case.subject,
            _MEMBER.name,
            Case.service_area,
            Case.status,
            effective_due().label("deadline"),
            Case.extended_due,
            case((Case.lead_officer_id == officer_id, "lead"), else_="additional"),
            late,
            Case.paused_at,
            Case.chase_count,
        )
        .join(_MEMBER, _MEMBER.id == Case.member_id)
        .where(*where)
        .order_by(rank, effective_due(), Case.id)
        .limit(size)
        .offset((page - 1) * size)
    )
    rows = [
        MyCase(
            reference=r[0],
            subject=r[1],
            member=r[2],
            service_area=r[3],
            status=r[4],
            deadline=r[5],
            extended=r[6] is not None,
            role=r[7],
            overdue=bool(r[8]),
            paused=r[9] is not None,
            chased=r[10] or 0,
        )
        for r in session.execute(query)
    ]
    if len(rows) < size and (rows or page == 1):
        total = (page - 1) * size + len(rows)
    else:
        counted = select(func.count()).select_from(Case).where(*where)
        total = int(session.execute(counted).scalar_one())
    return MyCases(rows, total)
