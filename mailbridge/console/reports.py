"""Scrutiny reports: how well member enquiries received in a period were handled.

A case belongs to the period in which it was *received*, by its local date in the council's
time zone (so an email at 00:30 BST on 1 April counts in April). Figures, for the whole
council, per directorate and service area, and per member:

* received: cases received in the period;
* acknowledged within target: the acknowledgement's local date on or before
  ``acknowledge_due``;
* responded: cases with a first response (a holding reply counts: it is a response to the
  member), out of those received;
* responded within target: the first response's local date on or before ``response_due``,
  the *original* deadline, which is the one scrutiny counts; and, as a second figure, on or
  before the deadline in force (``extended_due`` when an officer used ``#extend``);
* the within-target ratios count a case once its outcome is known: it was answered, or its
  deadline has passed (before ``today``) without an answer. Open cases not yet due are left
  out rather than counted as late or on time, and a closed case (merged, converted) with no
  answer is left out too;
* working days to first response and to completion: ``WorkingCalendar.working_days_between``
  from the received local date to the response (or completion) local date, so weekends,
  bank holidays and closure days do not count; reported as the median and the 90th
  percentile (see :func:`percentile`);
* overdue now: still open (new or in progress) and the deadline in force is before today;
* holding replies and extensions: events of those kinds on the period's cases; reopened:
  times the cases were reopened; chasers: update requests from members (``chase_count``).

The cases are read through console/report_counts.py (one pass, counted into a Tally) and
console/report_months.py (each past month's settled cases counted ahead of time); the rows,
roll-ups and slices are made here from the Tally.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from operator import add
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from mailbridge.console import report_months
from mailbridge.console.report_counts import COUNTS, Counts, Group, Tally
from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.store.models import Person, utcnow


class ReportError(UserError):
    """A report that cannot be produced as asked (the period is the wrong way round)."""


# ---------------------------------------------------------------------------------------------
# Small value types


@dataclass(frozen=True)
class Ratio:
    """`hit` out of `of`, shown with its counts: "8/10 (80%)"."""

    hit: int
    of: int

    @property
    def percent(self) -> float | None:
        return None if self.of == 0 else 100.0 * self.hit / self.of

    @property
    def percent_text(self) -> str:
        """The percentage in whole numbers, halves rounded up: "67%"; "-" out of none."""
        pct = self.percent
        return "-" if pct is None else f"{math.floor(pct + 0.5)}%"

    def against(self, target: float | None) -> str:
        """percent_text, but never rounded up onto a target it misses: 89.6% against 90% is
        "89.6%", not "90%"."""
        pct = self.percent
        if pct is not None and target is not None and pct < target <= math.floor(pct + 0.5):
            return f"{math.floor(pct * 10) / 10:g}%"
        return self.percent_text

    def __str__(self) -> str:
        return f"{self.hit}/{self.of} ({self.percent_text})"


@dataclass(frozen=True)
class Spread:
    """Working days over the cases that have a value: how many, the median, the 90th pct."""

    count: int
    median: float | None
    p90: float | None

    @classmethod
    def of_counts(cls, counts: Mapping[int, int]) -> Spread:
        """From {value: how many}: the same figures as the values one by one."""
        runs = sorted((v, n) for v, n in counts.items() if n)
        size = sum(n for _, n in runs)

        def at(index: int) -> float:
            for value, n in runs:
                if index < n:
                    return value
                index -= n
            raise IndexError(index)

        return cls(size, _interpolated(at, size, 50), _interpolated(at, size, 90))


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """The `pct`th percentile of sorted values; None when there are none.

    Method: linear interpolation between closest ranks, inclusive of the ends — the value at
    position (n - 1) * pct / 100 of the sorted list (0-based), interpolating between the two
    neighbours when that position is fractional. It is Excel's PERCENTILE.INC, numpy's
    default and ``statistics.quantiles(method="inclusive")``, so a reader can check a figure
    in a spreadsheet; its 50th percentile is the ordinary median (the mean of the middle two
    of an even count). Results are rounded to 2 decimal places.
    """
    return _interpolated(ordered.__getitem__, len(ordered), pct)


def _interpolated(at: Callable[[int], float], size: int, pct: float) -> float | None:
    """percentile over `size` sorted values, the `i`th of which is at(i)."""
    if not size:
        return None
    position = (size - 1) * pct / 100.0
    low = math.floor(position)
    high = min(low + 1, size - 1)
    value = at(low) + (at(high) - at(low)) * (position - low)
    return round(value, 2)


# ---------------------------------------------------------------------------------------------
# Report shape


@dataclass(frozen=True)
class GroupStats:
    """One row of the report: the whole council, a directorate, a service area or a member."""

    level: str  # "total", "directorate", "service_area" or "member"
    directorate: str | None
    service_area: str | None
    member_id: int | None
    member: str | None
    received: int
    acknowledged: Ratio  # within target, of those acknowledged or past their target
    responded: Ratio  # of those received
    on_time: Ratio  # first response by the original deadline
    on_time_extended: Ratio  # first response by the deadline in force (extensions allowed)
    to_first_response: Spread
    to_completion: Spread
    overdue_now: int
    holding_replies: int
    extensions: int
    reopened: int
    chasers: int
    satisfaction: float | None = None  # the members' average answer (1-5), None without any
    satisfaction_answers: int = 0  # how many cases have an answer

    @property
    def key(self) -> tuple[str, str | None, str | None, int | None]:
        """Matches the same group across two periods."""
        return (self.level, self.directorate, self.service_area, self.member_id)

    @property
    def label(self) -> str:
        if self.level == "total":
            return "All cases"
        if self.level == "member":
            return self.member or f"member #{self.member_id}"
        if self.level == "directorate":
            return self.directorate or NO_DIRECTORATE
        return self.service_area or NO_SERVICE_AREA


NO_DIRECTORATE = "(no directorate)"
NO_SERVICE_AREA = "(no service area)"


@dataclass(frozen=True)
class Slice:
    """One week or calendar month of a period, as the charts draw it: one bar each."""

    start: date  # the week's Monday or the month's 1st (it may come before the period's start)
    received: dict[str | None, int]  # per directorate that had cases in it
    on_time: Ratio  # the whole council's, counted as GroupStats.on_time

    @property
    def total(self) -> int:
        return sum(self.received.values())


# Periods longer than this are drawn month by month, shorter ones week by week.
MONTHLY_FROM_DAYS = 92


def step_of(start: date, end: date) -> str:
    """ "month" or "week": the slices a period is drawn in, a dozen or so bars at most for a
    year and never a single bar for a month."""
    return "month" if (end - start).days + 1 > MONTHLY_FROM_DAYS else "week"


def slice_start(day: date, step: str) -> date:
    return day.replace(day=1) if step == "month" else day - timedelta(days=day.weekday())


def next_slice(first: date, step: str) -> date:
    if step == "week":
        return first + timedelta(weeks=1)
    return (first + timedelta(days=32)).replace(day=1)


def slice_starts(start: date, end: date, step: str) -> list[date]:
    """Every slice's first day, from the one holding `start` to the one holding `end`."""
    found = [slice_start(start, step)]
    while (following := next_slice(found[-1], step)) <= end:
        found.append(following)
    return found


@dataclass(frozen=True)
class PeriodReport:
    start: date
    end: date
    total: GroupStats
    areas: list[GroupStats]  # each directorate's row followed by its service areas' rows
    members: list[GroupStats]
    # Week by week or month by month (see step_of): cases received per directorate, and
    # the council's responses within target.
    step: str = "week"
    timeline: list[Slice] = field(default_factory=list)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def directorates(self) -> list[GroupStats]:
        return [g for g in self.areas if g.level == "directorate"]

    def days_in(self, part: Slice) -> int:
        """The days of a slice inside the period: fewer than a whole week or month at the
        ends of a period that does not start or end with one."""
        last = min(next_slice(part.start, self.step) - timedelta(days=1), self.end)
        return (last - max(part.start, self.start)).days + 1


@dataclass(frozen=True)
class Report:
    current: PeriodReport
    previous: PeriodReport | None
    today: date
    timezone: str
    # The share of cases to answer within target, in %, from [report] in the config; None
    # when the caller has none (the report then draws no target line).
    target_percent: float | None = None

    def paired(self, section: str) -> list[tuple[GroupStats, GroupStats | None]]:
        """Rows of one section ("total", "areas" or "members"), each with the same group in
        the previous period (None without --compare-previous or when it had no cases there).
        Groups only in the previous period come last, paired with an empty current row."""
        current = _section(self.current, section)
        if self.previous is None:
            return [(g, None) for g in current]
        before = {g.key: g for g in _section(self.previous, section)}
        rows = [(g, before.pop(g.key, None)) for g in current]
        rows += [(_empty_like(g), g) for g in before.values()]
        return rows


def _section(period: PeriodReport, section: str) -> list[GroupStats]:
    if section == "total":
        return [period.total]
    if section == "areas":
        return period.areas
    if section == "members":
        return period.members
    raise ValueError(section)


def _empty_like(group: GroupStats) -> GroupStats:
    return _stats(
        group.level,
        group.directorate,
        group.service_area,
        group.member_id,
        group.member,
        ([0] * COUNTS, {}, {}),
    )


# ---------------------------------------------------------------------------------------------
# Building


def year_to_date(today: date) -> tuple[date, date]:
    """The council's financial year so far (from 1 April): the report page's first period."""
    year = today.year if today.month >= 4 else today.year - 1
    return date(year, 4, 1), today


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same length ending the day before `start`."""
    length = end - start
    prev_end = start - timedelta(days=1)
    return prev_end - length, prev_end


def build_report(
    session: Session,
    calendar: WorkingCalendar,
    start: date,
    end: date,
    *,
    compare_previous: bool = False,
    today: date | None = None,
    target_percent: float | None = None,
) -> Report:
    """The report for cases received from `start` to `end` (local dates, both included)."""
    if end < start:
        raise ReportError(
            f"the period ends ({end.isoformat()}) before it starts "
            f"({start.isoformat()}): --to must be on or after --from"
        )
    today = today or calendar.local_date(utcnow())
    current = build_period(session, calendar, start, end, today)
    previous = None
    if compare_previous:
        previous = build_period(session, calendar, *previous_period(start, end), today)
    return Report(current, previous, today, calendar.zone.key, target_percent)


build = build_report  # the name the benchmark looks for


def build_period(
    session: Session, calendar: WorkingCalendar, start: date, end: date, today: date
) -> PeriodReport:
    figures = report_months.tally(session.connection(), calendar, start, end, today)
    step = step_of(start, end)
    names = _member_names(session, set(figures.members))
    return PeriodReport(
        start=start,
        end=end,
        members=_roll_members(figures, names),
        step=step,
        timeline=_timeline(figures, slice_starts(start, end, step), step),
        **_roll_areas(figures),
    )


def _timeline(figures: Tally, starts: list[date], step: str) -> list[Slice]:
    """The slices' figures from the Tally's days: received per directorate, and assessed
    and within target for the whole council."""
    per_slice: dict[date, Counter[str | None]] = defaultdict(Counter)
    hits: Counter[date] = Counter()
    of: Counter[date] = Counter()
    for ordinal, (received, (assessed, on_time)) in figures.days.items():
        first = slice_start(date.fromordinal(ordinal), step)
        per_slice[first].update(received)
        of[first] += assessed
        hits[first] += on_time
    return [
        Slice(
            first,
            {d: n for d in sorted(per_slice[first], key=_order) if (n := per_slice[first][d])},
            Ratio(hits[first], of[first]),
        )
        for first in starts
    ]


def _stats(
    level: str,
    directorate: str | None,
    service_area: str | None,
    member_id: int | None,
    member: str | None,
    group: Group,
) -> GroupStats:
    counts, first, done = group
    n = Counts(*counts)
    return GroupStats(
        level=level,
        directorate=directorate,
        service_area=service_area,
        member_id=member_id,
        member=member,
        received=n.received,
        acknowledged=Ratio(n.ack_on_time, n.ack_assessed),
        responded=Ratio(n.responded, n.received),
        on_time=Ratio(n.on_time, n.assessed),
        on_time_extended=Ratio(n.on_time_ext, n.assessed_ext),
        to_first_response=Spread.of_counts(first),
        to_completion=Spread.of_counts(done),
        overdue_now=n.overdue,
        holding_replies=n.holding,
        extensions=n.extensions,
        reopened=n.reopened,
        chasers=n.chasers,
        satisfaction=round(n.satisfaction_sum / n.satisfaction_answers, 2)
        if n.satisfaction_answers
        else None,
        satisfaction_answers=n.satisfaction_answers,
    )


def _order(value: str | None) -> tuple[bool, str]:
    """Alphabetical, the missing ones last."""
    return (value is None, (value or "").casefold())


def _combine(parts: Iterable[Group]) -> Group:
    counts = [0] * COUNTS
    first: Counter[int] = Counter()
    done: Counter[int] = Counter()
    for part_counts, part_first, part_done in parts:
        counts[:] = map(add, counts, part_counts)
        first.update(part_first)
        done.update(part_done)
    return counts, first, done


def _roll_areas(figures: Tally) -> dict[str, Any]:
    """The total row, and each directorate's row followed by its service areas' rows."""
    by_area = figures.areas
    rows: list[GroupStats] = []
    subtotals: list[Group] = []
    for directorate in sorted({d for d, _ in by_area}, key=_order):
        areas = sorted((a for d, a in by_area if d == directorate), key=_order)
        subtotal = _combine(by_area[directorate, a] for a in areas)
        subtotals.append(subtotal)
        rows.append(_stats("directorate", directorate, None, None, None, subtotal))
        for area in areas:
            rows.append(
                _stats("service_area", directorate, area, None, None, by_area[directorate, area])
            )
    total = _stats("total", None, None, None, None, _combine(subtotals))
    return {"total": total, "areas": rows}


def _roll_members(figures: Tally, names: dict[int, str]) -> list[GroupStats]:
    ordered = sorted(figures.members, key=lambda m: (names.get(m, "").casefold(), m))
    return [_stats("member", None, None, m, names.get(m), figures.members[m]) for m in ordered]


def _member_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    p = Person.__table__.c  # type: ignore[attr-defined]
    rows = session.connection().execute(select(p.id, p.name).where(p.id.in_(sorted(ids))))
    return {pid: name for pid, name in rows}
