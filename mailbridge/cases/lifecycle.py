"""Every status transition of a case, written once.

```
new ──assign a lead──> in_progress ──response / `case status completed`──> completed
 ^  <─`case status new`─┘  (only while no lead)                               │
 └──────────────── reopen (no lead) <── reopen (member's email, coordinator) ─┘
new, in_progress ──merge / convert──> closed (for good: it never changes again)
```

Completing or closing a paused case ends its pause first, so its deadline and the reports'
on-time count include the paused days. The callers (what inbound email does, the
coordinator's actions, assignment) write their own event, in their words; the state change
itself is only ever made here.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailbridge.deadlines import clock
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.store.models import Case, CaseStatus

STATUS_WORDS = {
    CaseStatus.NEW: "new",
    CaseStatus.IN_PROGRESS: "in progress",
    CaseStatus.COMPLETED: "completed",
    CaseStatus.CLOSED: "closed",
}


def words(status: str) -> str:
    """A status as people read it: "in progress", not "in_progress"."""
    return STATUS_WORDS[CaseStatus(status)]


def touch(case: Case, now: datetime) -> None:
    """Any change to a case moves its `updated_at`: the case list sorts by it."""
    case.updated_at = now


def closed_why(session: Session, case: Case) -> str:
    if case.merged_into_id is not None:
        other = session.get(Case, case.merged_into_id)
        return f"merged into {other.reference if other else '?'}"
    if case.converted_to:
        return f"converted to a {case.converted_to.replace('_', ' ')}"
    return case.closed_reason or "closed"


def refuse_closed(session: Session, case: Case) -> None:
    """A closed case (merged or converted) carries on elsewhere: it never changes again."""
    if case.status == CaseStatus.CLOSED:
        raise UserError(
            f"{case.reference} is closed ({closed_why(session, case)}) and cannot change"
        )


def start(case: Case, now: datetime) -> None:
    """A lead officer is assigned: a new case is in progress from now on."""
    if case.status == CaseStatus.NEW:
        case.status = CaseStatus.IN_PROGRESS
    touch(case, now)


def back_to_new(case: Case, now: datetime) -> None:
    """In progress back to new: only while no lead officer is assigned."""
    if case.lead_officer_id is not None:
        raise UserError(
            f"{case.reference} has a lead officer, so it cannot be new again; "
            "use `mailbridge case reassign` to change its officers"
        )
    case.status = CaseStatus.NEW
    touch(case, now)


def mark_in_progress(case: Case, now: datetime) -> None:
    case.status = CaseStatus.IN_PROGRESS
    touch(case, now)


def record_response(case: Case, at: datetime) -> None:
    """A reply reached the member: service-level figures count from `at`."""
    case.first_response_at = case.first_response_at or at
    case.last_response_at = at


def complete(
    session: Session, services: Services, case: Case, *, at: datetime, actor: str, now: datetime
) -> None:
    """Completed at `at` (when the response reached us, or now for a coordinator)."""
    clock.settle_pause(session, services, case, actor=actor, now=now)
    case.status = CaseStatus.COMPLETED
    case.completed_at = at
    touch(case, now)


def reopens(working_days_since_completed: int | None, window: int) -> bool:
    """Whether the member's word on a completed case reopens it (within `[cases]
    reopen_working_days` of its completion) rather than opening a new, linked case: one
    rule for a reply by email and the portal's Reopen button."""
    return working_days_since_completed is not None and working_days_since_completed <= window


def reopen(case: Case, now: datetime) -> None:
    """A completed case open again: in progress with its lead officer, else new."""
    case.status = CaseStatus.IN_PROGRESS if case.lead_officer_id else CaseStatus.NEW
    case.completed_at = None
    case.reopened_count += 1
    touch(case, now)


def close(
    session: Session,
    services: Services,
    case: Case,
    *,
    reason: str,
    actor: str,
    now: datetime,
    merged_into: Case | None = None,
    converted_to: str | None = None,
) -> None:
    """Closed for good: merged into another case, or converted to a complaint or a service
    request handled elsewhere."""
    clock.settle_pause(session, services, case, actor=actor, now=now)
    case.status = CaseStatus.CLOSED
    if merged_into is not None:
        case.merged_into_id = merged_into.id
    if converted_to is not None:
        case.converted_to = converted_to
    case.closed_reason = reason
    touch(case, now)
