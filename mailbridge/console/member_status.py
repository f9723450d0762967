"""A member's own enquiries, as the `status` reply and the weekly member digest show them.

One builder for both emails, so the digest says exactly what a `status` request would.
A member's cases are those cases/permissions.py gives them: those they raised and those
they were put on (`case link`, `case merge`); never another member's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from mailbridge.cases.permissions import member_cases_clause
from mailbridge.delivery import queue
from mailbridge.services import Services
from mailbridge.store.models import Case, CaseStatus, Person

OPEN = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
COUNTED = (CaseStatus.NEW, CaseStatus.IN_PROGRESS, CaseStatus.COMPLETED)


@dataclass(frozen=True, slots=True)
class MemberDashboard:
    entries: list[dict[str, Any]]  # one per case, newest first: case, lead, due, overdue, ...
    counts: dict[str, int]  # new, in_progress, completed

    @property
    def open(self) -> int:
        return self.counts[CaseStatus.NEW] + self.counts[CaseStatus.IN_PROGRESS]

    def context(self, member: Person, requester: Person, today: date) -> dict[str, Any]:
        """What the `status` and `member_digest` templates read."""
        return {
            "member": member,
            "requester": requester,
            "entries": self.entries,
            "counts": self.counts,
            "today": today,
        }


def member_dashboard(
    session: Session, services: Services, member_id: int, today: date, *, open_only: bool = False
) -> MemberDashboard:
    """The member's cases with their lead officer, deadline in force, lateness and last
    response; counts by status over all of them (`open_only` lists only the open ones)."""
    query = select(Case).where(member_cases_clause(member_id))
    rows = session.exec(query.order_by(col(Case.created_at).desc(), col(Case.id).desc())).all()
    counts = {status: sum(1 for c in rows if c.status == status) for status in COUNTED}
    if open_only:
        rows = [c for c in rows if c.status in OPEN]
    lead_ids = {c.lead_officer_id for c in rows if c.lead_officer_id}
    leads = {
        p.id: p for p in session.exec(select(Person).where(col(Person.id).in_(lead_ids))).all()
    }
    entries = [
        {
            "case": c,
            "lead": leads.get(c.lead_officer_id) if c.lead_officer_id else None,
            "due": c.extended_due or c.response_due,
            "overdue": c.status in OPEN
            and c.paused_at is None
            and (c.extended_due or c.response_due) < today,
            "paused": c.paused_at is not None,
            "last_response": queue.local(services, c.last_response_at),
        }
        for c in rows
    ]
    return MemberDashboard(entries, counts)
