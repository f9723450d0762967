"""The scrutiny report's figures for settled cases, counted a month at a time ahead of time.

A case is *settled* on a day when nothing the report says of it can change by the passing
of days from then on: closed, or completed with its acknowledgement and first response
given, or with every deadline it has before that day (LIVE_UNTIL in store/models.py is the
last day it is *live*). Most of a year's cases are settled, so a period's report is each
whole month's figures for its cases settled on the day the month was counted, kept here in
`report_month`, plus a live count of the month's cases live on that day and of whatever no
kept month covers; a month that the period only partly covers is used too when that is
cheaper, less a live count of its settled cases outside the period (Tallies add and
subtract: console/report_counts.py).

A kept month is trusted only from the day it was counted (a report of an earlier day
counts it live) and only while

* no `report_change` row falls inside it: the database's own triggers write one for every
  change to what the report reads (a case's moments, deadlines, status, tallies, groups; a
  holding reply or extension; a case inserted or deleted), whichever door made it;
* its basis is today's: the council's zone and working days (bank holidays, closure days),
  and FORMAT, which a change to what the report counts must raise.

Otherwise the report counts that month live, as before; its figures never depend on the
kept ones being up to date. A process remembers the kept months it added up, and the settled
cases of their days outside a period, by the months' names (month, counted at): a report
asked again reads only the live part. The service's tick counts the months that need it (`refresh`),
each in a transaction that removes the month's change rows it can see and counts what
they changed: a change not yet committed keeps its row, so the month is counted again. It
also counts again a month whose live cases have all settled since (after `live_until`), so
the live part stays the few cases whose deadlines are still ahead.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import NamedTuple

from sqlalchemy import (
    Connection,
    Date,
    Engine,
    and_,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    text,
)

from mailbridge.console.report_counts import (
    ALL,
    LIVE,
    SETTLED,
    Tally,
    count,
    local_midnight,
)
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.db import transaction
from mailbridge.store.models import LIVE_UNTIL, Case, ReportChange, ReportMonth, utcnow

FORMAT = 2  # raise it when what a month's figures hold changes


def basis(calendar: WorkingCalendar) -> str:
    """Changes when the zone or the working days change: the kept months are then unused."""
    facts = {"format": FORMAT, "calendar": calendar.rules()}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Pass:
    """A live count: the `which` cases received from `first` to `last` (live or settled on
    `day`), added or taken off."""

    first: date
    last: date
    which: str
    sign: int = 1
    day: date | None = None


class Kept(NamedTuple):
    """A kept month still to be trusted: when it was counted (which names its figures: a
    month counted again is counted at a later moment), on which local day, and the last
    day one of its cases live on that day is live (None: none is)."""

    counted_at: datetime
    day: date
    live_until: date | None


def kept(
    conn: Connection, calendar: WorkingCalendar, first: date, last: date, today: date
) -> dict[date, Kept]:
    """The kept months from `first` to `last` to be trusted on `today`."""
    m = ReportMonth.__table__.c  # type: ignore[attr-defined]
    r = ReportChange.__table__.c  # type: ignore[attr-defined]
    changed = exists().where(and_(r.received_at >= m.lo, r.received_at < m.hi))
    rows = conn.execute(
        select(m.month, m.counted_at, m.day, m.live_until).where(
            m.month >= first,
            m.month <= last,
            m.basis == basis(calendar),
            m.day <= today,
            ~changed,
        )
    )
    return {month: Kept(*facts) for month, *facts in rows}


class _Memo:
    """What a process worked out from kept months, by the database, the basis and the
    months' names (month, counted at): the same names always mean the same figures, so a
    report asked again (the console's page, the weekly digests) reads and adds up the kept
    months once. Bounded; shared by the console's threads."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.found: OrderedDict[Hashable, Tally] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Tally]) -> Tally:
        with self.lock:
            if key in self.found:
                self.found.move_to_end(key)
                return self.found[key]
        made = make()
        with self.lock:
            self.found[key] = made
            while len(self.found) > self.size:
                self.found.popitem(last=False)
        return made


_SUMS = _Memo()  # the kept months a period uses, added up
_EDGES = _Memo()  # the settled cases of a kept month's days outside a period


def forget() -> None:
    """Empties the process's memo, as a new process starts (the benchmark's first report)."""
    for memo in (_SUMS, _EDGES):
        with memo.lock:
            memo.found.clear()


def plan(months: Mapping[date, date], start: date, end: date) -> tuple[list[date], list[Pass]]:
    """Which kept months (each with the day it was counted on) a period from `start` to
    `end` uses, and what it counts live."""
    used: list[date] = []
    passes: list[Pass] = []
    month = month_start(start)
    while month <= end:
        last_day = next_month(month) - timedelta(days=1)
        first, last = max(month, start), min(last_day, end)
        inside = (last - first).days + 1
        if month not in months or inside < (last_day - month).days + 1 - inside:
            passes.append(Pass(first, last, ALL))
        else:
            used.append(month)
            day = months[month]
            passes.append(Pass(first, last, LIVE, day=day))
            if month < first:
                passes.append(Pass(month, first - timedelta(days=1), SETTLED, -1, day))
            if last < last_day:
                passes.append(Pass(last + timedelta(days=1), last_day, SETTLED, -1, day))
        month = next_month(month)
    return used, _joined(passes)


def _joined(passes: list[Pass]) -> list[Pass]:
    """Neighbouring passes of the same kind (and day) as one."""
    out: list[Pass] = []
    for p in sorted(passes, key=lambda p: (p.which, p.sign, p.first)):
        last = out[-1] if out else None
        if last and (last.which, last.sign, last.day, last.last + timedelta(days=1)) == (
            p.which,
            p.sign,
            p.day,
            p.first,
        ):
            out[-1] = Pass(last.first, p.last, p.which, p.sign, p.day)
            continue
        out.append(p)
    return out


def tally(
    conn: Connection, calendar: WorkingCalendar, start: date, end: date, today: date
) -> Tally:
    """The Tally of every case received from `start` to `end`: kept months plus live counts.

    Each statement may see newer commits than the last (PostgreSQL's READ COMMITTED): a case
    settled or unsettled after `kept` read its month would be missed or counted twice by
    the live passes, so the months used are read again after them, and the whole counted
    again if one has changed (a change row, or counted again since); all live the third
    time."""
    first, last = month_start(start), month_start(end)
    facts = (str(conn.engine.url), basis(calendar))  # which database, on which days
    for _ in range(2):
        found = kept(conn, calendar, first, last, today)
        used, passes = plan({m: k.day for m, k in found.items()}, start, end)
        counted = {month: found[month].counted_at for month in used}
        try:
            total = Tally()
            total.add(_SUMS.get((facts, *counted.items()), partial(_added, conn, counted)))
        except _Moved:
            continue
        for p in passes:
            if p.which == SETTLED:  # inside a kept month: fixed while it is kept
                month = month_start(p.first)
                edge = (facts, month, found[month].counted_at, p.first, p.last)
                part = _EDGES.get(
                    edge,
                    partial(count, conn, calendar, p.first, p.last, today, SETTLED, p.day),
                )
            else:
                part = count(conn, calendar, p.first, p.last, today, p.which, p.day)
            total.add(part, p.sign)
        if used:
            again = kept(conn, calendar, first, last, today)
            if any(again.get(month) != found[month] for month in used):
                continue
        total.trim(start, end)
        return total
    total = count(conn, calendar, start, end, today, ALL)
    total.trim(start, end)
    return total


class _Moved(Exception):
    """A kept month was counted again between reading its name and its figures."""


def _added(conn: Connection, counted: dict[date, datetime]) -> Tally:
    """The kept months' figures, added up: only as counted at the moments named."""
    m = ReportMonth.__table__.c  # type: ignore[attr-defined]
    rows = conn.execute(select(m.month, m.counted_at, m.figures).where(m.month.in_(counted)))
    total = Tally()
    seen = 0
    for month, counted_at, figures in rows:
        if counted[month] != counted_at:
            raise _Moved(month)
        total.add(Tally.from_json(figures))
        seen += 1
    if seen != len(counted):
        raise _Moved(counted)
    return total


def refresh(
    engine: Engine, calendar: WorkingCalendar, today: date, *, seconds: float = 2.0
) -> list[date]:
    """Counts the past months not kept, changed since or with live cases all settled since
    (oldest first), at least one and then until `seconds` have gone; returns the months
    counted. The service's tick calls it, so a change to an old case is counted again
    within a tick or two."""
    last = month_start(today) - timedelta(days=1)
    with engine.connect() as conn:
        c = Case.__table__.c  # type: ignore[attr-defined]
        r = ReportChange.__table__.c  # type: ignore[attr-defined]
        oldest = [
            conn.execute(select(func.min(c.received_at))).scalar(),
            conn.execute(select(func.min(r.received_at))).scalar(),
        ]
        moments = [m for m in oldest if m is not None]
        if not moments:
            return []
        month = month_start(calendar.local_date(min(moments)))
        found = kept(conn, calendar, month, last, today)
    good = {m for m, k in found.items() if k.live_until is None or k.live_until >= today}
    counted: list[date] = []
    started = time.monotonic()
    while month <= last:
        if month not in good:
            if counted and time.monotonic() - started > seconds:
                break
            count_month(engine, calendar, month, today)
            counted.append(month)
        month = next_month(month)
    return counted


def count_month(engine: Engine, calendar: WorkingCalendar, month: date, day: date) -> None:
    """Counts one month's cases settled on `day` and keeps the figures, in one transaction
    that first removes the month's change rows it can see (see the module docstring)."""
    lo = local_midnight(calendar.zone, month)
    hi = local_midnight(calendar.zone, next_month(month))
    with transaction(engine) as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":  # one counter of a month at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(month)})
        r = ReportChange.__table__.c  # type: ignore[attr-defined]
        conn.execute(delete(ReportChange).where(r.received_at >= lo, r.received_at < hi))
        last = next_month(month) - timedelta(days=1)
        figures = count(conn, calendar, month, last, day, SETTLED, day)
        c = Case.__table__.c  # type: ignore[attr-defined]
        live_until = literal_column(LIVE_UNTIL, Date())
        latest = conn.execute(
            select(func.max(live_until)).where(
                live_until >= day, c.received_at >= lo, c.received_at < hi
            )
        ).scalar()
        conn.execute(delete(ReportMonth).where(ReportMonth.month == month))  # type: ignore[arg-type]
        conn.execute(
            insert(ReportMonth).values(
                month=month,
                lo=lo,
                hi=hi,
                basis=basis(calendar),
                figures=figures.to_json(),
                counted_at=utcnow(),
                day=day,
                live_until=latest,
            )
        )


def _lock_key(month: date) -> int:
    """An advisory lock's number of its own for a month (a constant in the high bits)."""
    return (0x4D42_5250 << 20) + month.year * 12 + month.month
