"""The coordinator's morning view: counts by status, what is late or nearly due, the newest.

The counts by status from the tally the database keeps (store/tally.py), one pass over the
open cases' deadlines in an index, and one page of the case list; the CLI only presents
the result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlmodel import Session, col

from mailbridge.console.filters import (
    OPEN,
    CaseFilter,
    CaseListRow,
    due_within_clause,
    list_cases,
    overdue_clause,
)
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store import tally
from mailbridge.store.models import Case

DUE_SOON_DAYS = 2


@dataclass(frozen=True, slots=True)
class Dashboard:
    today: date
    new: int
    in_progress: int
    completed: int
    closed: int
    overdue: int  # open cases past their effective deadline
    due_soon: int  # open cases due within `due_soon_days` working days from today
    due_soon_days: int
    newest: list[CaseListRow]  # none when asked for none (the web console lists its own)

    def total(self, wanted: CaseFilter) -> int | None:
        """How many cases `wanted` selects when these counts already say: no filter, or
        a status alone (None: they do not)."""
        by_status = {
            "new": self.new,
            "in_progress": self.in_progress,
            "completed": self.completed,
            "closed": self.closed,
        }
        if not wanted.filtering:
            return sum(by_status.values())
        if wanted.status in by_status and not replace(wanted, status=None).filtering:
            return by_status[wanted.status]
        return None


def deadline_counts(calendar: WorkingCalendar, today: date, due_soon_days: int) -> Select[Any]:
    """How many open cases are overdue and due soon: one pass over the open cases' entries
    in the index ix_case_running (every column it reads is there), never the cases."""

    def counted(clause: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((clause, 1), else_=0)), 0)

    return select(
        counted(overdue_clause(today)),
        counted(due_within_clause(today, calendar, due_soon_days)),
    ).where(col(Case.status).in_(OPEN))


def dashboard(
    session: Session,
    calendar: WorkingCalendar,
    today: date,
    *,
    newest: int = 15,
    due_soon_days: int = DUE_SOON_DAYS,
) -> Dashboard:
    by_status = tally.by_status(session)
    overdue, due_soon = session.execute(deadline_counts(calendar, today, due_soon_days)).one()
    return Dashboard(
        today=today,
        new=by_status.get("new", 0),
        in_progress=by_status.get("in_progress", 0),
        completed=by_status.get("completed", 0),
        closed=by_status.get("closed", 0),
        overdue=int(overdue),
        due_soon=int(due_soon),
        due_soon_days=due_soon_days,
        newest=list_cases(session, CaseFilter(limit=newest), calendar, today) if newest else [],
    )
