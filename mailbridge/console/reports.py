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

One query fetches, for each of the period's cases, only its group keys (directorate, service
area, member), its moments and deadlines, its status and its two tallies — never whole rows —
and one pass here counts everything by group key, rolled up to service areas, directorates,
members and the whole council; a second query counts the holding replies and extensions.
Dates travel as day numbers: PostgreSQL converts moments to local dates with the zone itself
and sends days since the period's eve; SQLite sends its stored text, whose local date is
looked up by the UTC hour in a table built from the zone's UTC offsets (see _Days). Working
days are then a difference of precomputed ranks.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import add
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Integer, String, and_, cast, func, literal, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.store.models import Case, CaseStatus, Event, Person, utcnow

OPEN_STATUSES = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
HOLDING_REPLY = "holding_reply"
DEADLINE_EXTENDED = "deadline_extended"


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
    def of(cls, values: Iterable[int]) -> Spread:
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 90))


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """The `pct`th percentile of sorted values; None when there are none.

    Method: linear interpolation between closest ranks, inclusive of the ends — the value at
    position (n - 1) * pct / 100 of the sorted list (0-based), interpolating between the two
    neighbours when that position is fractional. It is Excel's PERCENTILE.INC, numpy's
    default and ``statistics.quantiles(method="inclusive")``, so a reader can check a figure
    in a spreadsheet; its 50th percentile is the ordinary median (the mean of the middle two
    of an even count). Results are rounded to 2 decimal places.
    """
    if not ordered:
        return None
    position = (len(ordered) - 1) * pct / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
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
        _Counts(),
        [],
        [],
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


@dataclass
class _Counts:
    """Additive counts for one group (see the module docstring for each)."""

    received: int = 0
    ack_on_time: int = 0
    ack_assessed: int = 0
    responded: int = 0
    on_time: int = 0
    assessed: int = 0
    on_time_ext: int = 0
    assessed_ext: int = 0
    overdue: int = 0
    chasers: int = 0
    reopened: int = 0
    holding: int = 0
    extensions: int = 0
    satisfaction_sum: int = 0
    satisfaction_answers: int = 0


def build_period(
    session: Session, calendar: WorkingCalendar, start: date, end: date, today: date
) -> PeriodReport:
    lo = _local_midnight(calendar.zone, start)
    hi = _local_midnight(calendar.zone, end + timedelta(days=1))
    conn = session.connection()
    dialect = conn.dialect.name
    c = Case.__table__.c  # type: ignore[attr-defined]
    last_day = max(today, end)
    in_period = and_(c.received_at >= lo, c.received_at < hi)
    keys = (c.directorate, c.service_area, c.member_id)

    # One pass over the period's cases: the group keys, the moments and deadlines as day
    # numbers (see _Days), the status and the two tallies; every figure is rolled up here.
    days = _Days(
        calendar,
        start - timedelta(days=1),
        last_day + timedelta(days=90),
        raw=dialect != "postgresql",
    )
    if days.raw:

        def moment(column: Any) -> ColumnElement[Any]:
            return type_coerce(column, String)

        def deadline(column: Any) -> ColumnElement[Any]:
            return type_coerce(column, String)
    else:
        base = literal(days.first, Date)

        def moment(column: Any) -> ColumnElement[Any]:
            return type_coerce(cast(func.timezone(calendar.zone.key, column), Date) - base, Integer)

        def deadline(column: Any) -> ColumnElement[Any]:
            return type_coerce(column - base, Integer)

    rows = select(
        *keys,
        moment(c.received_at),
        moment(c.acknowledged_at),
        deadline(c.acknowledge_due),
        moment(c.first_response_at),
        deadline(c.response_due),
        deadline(c.extended_due),
        moment(c.completed_at),
        c.status,
        c.chase_count,
        c.reopened_count,
        c.satisfaction,
    ).where(in_period)

    # Per group key: the 15 _Counts figures in field order, then the working days to first
    # response and to completion of its cases, then day numbers of receipt (see _COUNTS).
    groups: dict[tuple[Any, Any, Any], list[Any]] = {}
    result = conn.execute(rows)
    try:
        # The DBAPI's own tuples: none of these columns has a result processor, and a Row per
        # case would cost more than everything done with it below.
        _tally(result.cursor, groups, days, today)
    finally:
        result.close()

    e = Event.__table__.c  # type: ignore[attr-defined]
    events = (
        select(*keys, e.kind, func.count())
        .select_from(Event.__table__.join(Case.__table__, e.case_id == c.id))  # type: ignore[attr-defined]
        .where(in_period, e.kind.in_((HOLDING_REPLY, DEADLINE_EXTENDED)))
        .group_by(*keys, e.kind)
    )
    for *key, kind, n in conn.execute(events):
        group = groups.get(tuple(key))  # type: ignore[arg-type]
        if group is None:
            group = groups[tuple(key)] = _new_group()  # type: ignore[index]
        group[11 if kind == HOLDING_REPLY else 12] += int(n)

    step = step_of(start, end)
    names = _member_names(session, {key[2] for key in groups})
    return PeriodReport(
        start=start,
        end=end,
        members=_roll_members(groups, names),
        step=step,
        timeline=_timeline(groups, days, slice_starts(start, end, step), step),
        **_roll_areas(groups),
    )


def _timeline(
    groups: dict[tuple[Any, Any, Any], list[Any]], days: _Days, starts: list[date], step: str
) -> list[Slice]:
    """The slices' figures from the day numbers _tally kept: received per directorate, and
    assessed and within target for the whole council."""
    received: dict[str | None, Counter[int]] = defaultdict(Counter)
    assessed: Counter[int] = Counter()
    on_time: Counter[int] = Counter()
    for (directorate, _area, _member), group in groups.items():
        received[directorate].update(group[17])
        assessed.update(group[18])
        on_time.update(group[19])
    owner = {n: slice_start(days.day(n), step) for c in (*received.values(), assessed) for n in c}
    per_slice: dict[date, Counter[str | None]] = defaultdict(Counter)
    for directorate in sorted(received, key=_order):
        for number, n in received[directorate].items():
            per_slice[owner[number]][directorate] += n
    hits: Counter[date] = Counter()
    of: Counter[date] = Counter()
    for number, n in assessed.items():
        of[owner[number]] += n
    for number, n in on_time.items():
        hits[owner[number]] += n
    return [
        Slice(
            first,
            {d: per_slice[first][d] for d in sorted(per_slice[first], key=_order)},
            Ratio(hits[first], of[first]),
        )
        for first in starts
    ]


def _tally(
    rows: Iterable[Sequence[Any]],
    groups: dict[tuple[Any, Any, Any], list[Any]],
    days: _Days,
    today: date,
) -> None:
    """Adds each case of `rows` (the columns of build_period's query) to its group."""
    raw = days.raw
    cut = days.cut
    number = days.number  # local text -> day number (SQLite only)
    rank = days.rank  # day number -> working-day rank
    now = days.index(today)
    closed = CaseStatus.CLOSED.value
    open_ = OPEN_STATUSES
    for (
        directorate,
        area,
        member,
        received,
        acked,
        ack_due,
        first,
        due,
        extended,
        done,
        status,
        chasers,
        reopened,
        satisfaction,
    ) in rows:
        if raw:
            received = number[received[:cut]]
            ack_due = number[ack_due]
            due = number[due]
            if acked is not None:
                acked = number[acked[:cut]]
            if first is not None:
                first = number[first[:cut]]
            if extended is not None:
                extended = number[extended]
            if done is not None:
                done = number[done[:cut]]
        key = (directorate, area, member)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _new_group()
        group[17].append(received)
        if acked is not None:
            group[2] += 1
            if acked <= ack_due:
                group[1] += 1
        elif ack_due < now and status != closed:
            group[2] += 1
        in_force = due if extended is None else extended
        if first is not None:
            group[18].append(received)
            if first <= due:
                group[4] += 1
                group[19].append(received)
            if first <= in_force:
                group[6] += 1
            group[15].append(rank[first] - rank[received])
        elif status != closed:
            if due < now:
                group[5] += 1
                group[18].append(received)
            if in_force < now:
                group[7] += 1
        if in_force < now and status in open_:
            group[8] += 1
        group[9] += chasers
        group[10] += reopened
        if satisfaction is not None:
            group[13] += satisfaction
            group[14] += 1
        if done is not None:
            group[16].append(rank[done] - rank[received])
    for group in groups.values():  # what the loop left out: received, responded (assessed)
        group[0] = len(group[17])
        group[3] = len(group[15])
        group[5] += group[3]
        group[7] += group[3]


# 15: then the working days to first response and to completion, and the day numbers on
# which the group's cases were received: all of them, those assessed for responded within
# target, and those within it (for the timeline).
_COUNTS = len(fields(_Counts))


def _new_group() -> list[Any]:
    return [0] * _COUNTS + [[], [], [], [], []]


def _stats(
    level: str,
    directorate: str | None,
    service_area: str | None,
    member_id: int | None,
    member: str | None,
    n: _Counts,
    first: Iterable[int],
    done: Iterable[int],
) -> GroupStats:
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
        to_first_response=Spread.of(first),
        to_completion=Spread.of(done),
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


# A rolled-up group: its _COUNTS counts in _Counts field order, and the working days to first
# response and to completion of its cases (sorted once the roll-up is done).
_Rolled = tuple[list[int], list[int], list[int]]


def _roll(rolled: dict[Any, _Rolled], key: Any, group: list[Any]) -> None:
    found = rolled.get(key)
    if found is None:
        rolled[key] = (group[:_COUNTS], list(group[_COUNTS]), list(group[_COUNTS + 1]))
        return
    counts, first, done = found
    counts[:] = map(add, counts, group[:_COUNTS])
    first.extend(group[_COUNTS])
    done.extend(group[_COUNTS + 1])


def _combine(parts: Iterable[_Rolled]) -> _Rolled:
    counts = [0] * _COUNTS
    first: list[int] = []
    done: list[int] = []
    for part_counts, part_first, part_done in parts:
        counts[:] = map(add, counts, part_counts)
        first += part_first
        done += part_done
    first.sort()  # sorted runs: cheap
    done.sort()
    return counts, first, done


def _roll_areas(groups: dict[tuple[Any, Any, Any], list[Any]]) -> dict[str, Any]:
    """The total row, and each directorate's row followed by its service areas' rows."""
    by_area: dict[tuple[Any, Any], _Rolled] = {}
    for (directorate, area, _member), group in groups.items():
        _roll(by_area, (directorate, area), group)
    rows: list[GroupStats] = []
    subtotals: list[_Rolled] = []
    for directorate in sorted({d for d, _ in by_area}, key=_order):
        areas = sorted((a for d, a in by_area if d == directorate), key=_order)
        for area in areas:
            by_area[directorate, area][1].sort()
            by_area[directorate, area][2].sort()
        counts, first, done = _combine(by_area[directorate, a] for a in areas)
        subtotals.append((counts, first, done))
        rows.append(
            _stats("directorate", directorate, None, None, None, _Counts(*counts), first, done)
        )
        for area in areas:
            counts, first, done = by_area[directorate, area]
            rows.append(
                _stats("service_area", directorate, area, None, None, _Counts(*counts), first, done)
            )
    counts, first, done = _combine(subtotals)
    total = _stats("total", None, None, None, None, _Counts(*counts), first, done)
    return {"total": total, "areas": rows}


def _roll_members(
    groups: dict[tuple[Any, Any, Any], list[Any]], names: dict[int, str]
) -> list[GroupStats]:
    by_member: dict[int, _Rolled] = {}
    for (_directorate, _area, member), group in groups.items():
        _roll(by_member, member, group)
    ordered = sorted(by_member, key=lambda m: (names.get(m, "").casefold(), m))
    rows = []
    for m in ordered:
        counts, first, done = by_member[m]
        rows.append(_stats("member", None, None, m, names.get(m), _Counts(*counts), first, done))
    return rows


def _member_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    p = Person.__table__.c  # type: ignore[attr-defined]
    rows = session.connection().execute(select(p.id, p.name).where(p.id.in_(sorted(ids))))
    return {pid: name for pid, name in rows}


# ---------------------------------------------------------------------------------------------
# Dates and working days


def _local_midnight(zone: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


@lru_cache(maxsize=32)
def _utc_offsets(zone_key: str, first: date, last: date) -> tuple[tuple[datetime, int], ...]:
    """(from this UTC instant, offset in minutes) pieces covering first..last; the first
    piece also stands for everything before, the last for everything after."""
    zone = ZoneInfo(zone_key)

    def offset(moment: datetime) -> int:
        delta = moment.astimezone(zone).utcoffset() or timedelta(0)
        return int(delta.total_seconds() // 60)

    moment = datetime.combine(first, time(), tzinfo=UTC)
    stop = datetime.combine(last, time(), tzinfo=UTC)
    pieces = [(moment, offset(moment))]
    while moment < stop:
        step = moment + timedelta(hours=12)
        if offset(step) != pieces[-1][1]:
            lo, hi = moment, step  # the change is in (lo, hi]: find it to the second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(mid) == pieces[-1][1]:
                    lo = mid
                else:
                    hi = mid
            hi = hi.replace(microsecond=0)
            pieces.append((hi, offset(hi)))
        moment = step
    return tuple(pieces)


class _Lookup(dict[Any, int]):
    """A dict that computes (and remembers) what it does not hold yet."""

    def __init__(self, compute: Callable[[Any], int]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> int:
        value = self[key] = self.compute(key)
        return value


_HOURS = tuple(f" {h:02d}" for h in range(24))


class _Days:
    """Local dates as day numbers (days after `first`) and their working-day ranks, so that
    working days between two dates are a subtraction (the same as
    WorkingCalendar.working_days_between) and dates compare as integers.

    PostgreSQL sends day numbers. With `raw`, SQLite sends its stored text: dates
    ('YYYY-MM-DD') and UTC moments ('YYYY-MM-DD HH:MM:SS.ffffff'), whose local date is looked
    up by their UTC hour (or minute, for zones with offsets or changes that are not whole
    hours): `number` maps that text to a day number. The dates and UTC hours from `first` to
    `last` are prepared; anything else is computed with the calendar when met."""

    def __init__(self, calendar: WorkingCalendar, first: date, last: date, *, raw: bool) -> None:
        self.calendar = calendar
        self.first = first
        self.raw = raw
        span = (last - first).days
        self.rank = _Lookup(self._rank)
        n = 0
        self.rank[0] = 0
        for i in range(1, span + 91):  # ranks run on 90 days, for late completions
            if calendar.is_working_day(first + timedelta(days=i)):
                n += 1
            self.rank[i] = n
        self.number = _Lookup(self._number)
        self.cut = 0
        if not raw:
            return
        pieces = _utc_offsets(
            calendar.zone.key, first - timedelta(days=2), last + timedelta(days=2)
        )
        whole_hours = all(off % 60 == 0 and (at.minute, at.second) == (0, 0) for at, off in pieces)
        self.cut = 13 if whole_hours else 16
        origin = datetime.combine(first, time(), tzinfo=UTC)
        # (from this hour after `first` 00:00 UTC, the offset in minutes)
        changes = [(int((at - origin).total_seconds()) // 3600, off) for at, off in pieces]
        k = 0
        for i in range(span + 1):
            iso = (first + timedelta(days=i)).isoformat()
            self.number[iso] = i
            if not whole_hours:
                continue
            for h, suffix in enumerate(_HOURS):
                hour = i * 24 + h
                while k + 1 < len(changes) and changes[k + 1][0] <= hour:
                    k += 1
                self.number[iso + suffix] = i + (h * 60 + changes[k][1]) // 1440

    def index(self, day: date) -> int:
        return (day - self.first).days

    def day(self, number: int) -> date:
        return self.first + timedelta(days=number)

    def _number(self, text: str) -> int:
        if len(text) == 10:
            return self.index(date.fromisoformat(text))
        minute = text[14:16] if len(text) >= 16 else "00"
        utc_moment = datetime.fromisoformat(f"{text[:10]}T{text[11:13]}:{minute}+00:00")
        return self.index(self.calendar.local_date(utc_moment))

    def _rank(self, number: int) -> int:
        # Outside the prepared range: count from its first day.
        return self.calendar.working_days_between(self.first, self.day(number))
