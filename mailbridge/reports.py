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

Counts are aggregated by the database (GROUP BY the directorate, service area and member of
the case, rolled up here); durations need per-case dates, so only the local dates and the
group keys of the period's cases are fetched, never whole rows. Local dates are computed in
SQL: PostgreSQL converts with the zone itself; SQLite gets the zone's UTC offsets over the
years concerned as a CASE expression.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, String, and_, case, cast, func, literal, or_, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from mailbridge.errors import UserError
from mailbridge.models import Case, CaseStatus, Event, Person, utcnow
from mailbridge.sla import WorkingCalendar

OPEN_STATUSES = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
HOLDING_REPLY = "holding_reply"
DEADLINE_EXTENDED = "deadline_extended"
PERCENTILE_METHOD = (
    "linear interpolation between closest ranks, inclusive "
    "(Excel PERCENTILE.INC, numpy's default, statistics.quantiles method='inclusive')"
)


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

    def __str__(self) -> str:
        pct = self.percent
        shown = "-" if pct is None else f"{math.floor(pct + 0.5)}%"  # halves round up
        return f"{self.hit}/{self.of} ({shown})"


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
class PeriodReport:
    start: date
    end: date
    total: GroupStats
    areas: list[GroupStats]  # each directorate's row followed by its service areas' rows
    members: list[GroupStats]
    # Cases received per directorate per week (keyed by the week's Monday).
    weekly: dict[str | None, dict[date, int]] = field(default_factory=dict)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def directorates(self) -> list[GroupStats]:
        return [g for g in self.areas if g.level == "directorate"]

    def weeks(self) -> list[date]:
        """Every week's Monday from the one holding `start` to the one holding `end`."""
        first = self.start - timedelta(days=self.start.weekday())
        return [first + timedelta(weeks=i) for i in range((self.end - first).days // 7 + 1)]


@dataclass(frozen=True)
class Report:
    current: PeriodReport
    previous: PeriodReport | None
    today: date
    timezone: str

    def paired(
        self, section: str
    ) -> list[tuple[GroupStats, GroupStats | None]]:
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
    return _stats(group.level, group.directorate, group.service_area, group.member_id,
                  group.member, _Counts(), [], [])


# ---------------------------------------------------------------------------------------------
# Building


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
) -> Report:
    """The report for cases received from `start` to `end` (local dates, both included)."""
    if end < start:
        raise ReportError(f"the period ends ({end.isoformat()}) before it starts "
                          f"({start.isoformat()}): --to must be on or after --from")
    today = today or calendar.local_date(utcnow())
    current = build_period(session, calendar, start, end, today)
    previous = None
    if compare_previous:
        previous = build_period(session, calendar, *previous_period(start, end), today)
    return Report(current, previous, today, calendar.zone.key)


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

    def add(self, other: _Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_AGGREGATES = (
    "received", "ack_on_time", "ack_assessed", "responded", "on_time", "assessed",
    "on_time_ext", "assessed_ext", "overdue", "chasers", "reopened",
)


def build_period(
    session: Session, calendar: WorkingCalendar, start: date, end: date, today: date
) -> PeriodReport:
    lo = _local_midnight(calendar.zone, start)
    hi = _local_midnight(calendar.zone, end + timedelta(days=1))
    conn = session.connection()
    dialect = conn.dialect.name
    c = Case.__table__.c  # type: ignore[attr-defined]
    last_day = max(today, end)

    def local_date(column: Any) -> ColumnElement[Any]:
        return _local_date_sql(column, calendar.zone, dialect, start, last_day)

    in_period = and_(c.received_at >= lo, c.received_at < hi)
    keys = (c.directorate, c.service_area, c.member_id)

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    due_in_force = func.coalesce(c.extended_due, c.response_due)
    today_ = literal(today, Date)
    not_closed = c.status != CaseStatus.CLOSED.value
    answered = c.first_response_at.is_not(None)
    answered_by = local_date(c.first_response_at)
    aggregates = select(
        *keys,
        func.count(),
        count(and_(c.acknowledged_at.is_not(None),
                   local_date(c.acknowledged_at) <= c.acknowledge_due)),
        count(or_(c.acknowledged_at.is_not(None),
                  and_(c.acknowledge_due < today_, not_closed))),
        count(answered),
        count(and_(answered, answered_by <= c.response_due)),
        count(or_(answered, and_(c.response_due < today_, not_closed))),
        count(and_(answered, answered_by <= due_in_force)),
        count(or_(answered, and_(due_in_force < today_, not_closed))),
        count(and_(c.status.in_(OPEN_STATUSES), due_in_force < today_)),
        func.coalesce(func.sum(c.chase_count), 0),
        func.coalesce(func.sum(c.reopened_count), 0),
    ).where(in_period).group_by(*keys)

    counts: dict[tuple[Any, ...], _Counts] = {}
    for row in conn.execute(aggregates):
        counts[tuple(row[:3])] = _Counts(**dict(zip(_AGGREGATES, map(int, row[3:]), strict=True)))

    e = Event.__table__.c  # type: ignore[attr-defined]
    events = (
        select(*keys, e.kind, func.count())
        .select_from(Event.__table__.join(Case.__table__, e.case_id == c.id))  # type: ignore[attr-defined]
        .where(in_period, e.kind.in_((HOLDING_REPLY, DEADLINE_EXTENDED)))
        .group_by(*keys, e.kind)
    )
    for *key, kind, n in conn.execute(events):
        entry = counts.setdefault(tuple(key), _Counts())
        if kind == HOLDING_REPLY:
            entry.holding += int(n)
        else:
            entry.extensions += int(n)

    # Per-case dates for the durations and the weekly volumes: the group keys and three
    # moments. PostgreSQL sends local dates; SQLite sends its stored UTC text, turned into
    # local dates here by the UTC hour (cheaper than SQLite's date functions, see _Stamps).
    stamps = _Stamps(calendar, start - timedelta(days=1), last_day + timedelta(days=90),
                     raw=dialect != "postgresql")
    moment = (lambda col: type_coerce(col, String)) if stamps.raw else local_date
    dates = select(
        c.directorate,
        c.service_area,
        c.member_id,
        moment(c.received_at),
        moment(c.first_response_at),
        moment(c.completed_at),
    ).where(in_period)
    rank = stamps.rank
    ranks = stamps.ranks  # looked up inline: this loop runs once per case
    cut = stamps.cut
    first_by_area: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    done_by_area: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    first_by_member: dict[Any, list[int]] = defaultdict(list)
    done_by_member: dict[Any, list[int]] = defaultdict(list)
    per_day: Counter[tuple[Any, Any]] = Counter()
    for directorate, area, member, received, first, done in conn.execute(dates):
        key = received[:cut] if cut else received
        per_day[directorate, key] += 1
        if first is None and done is None:
            continue
        start_rank = ranks.get(key)
        if start_rank is None:
            start_rank = rank(received)
        if first is not None:
            found = ranks.get(first[:cut] if cut else first)
            days = (rank(first) if found is None else found) - start_rank
            first_by_area[directorate, area].append(days)
            first_by_member[member].append(days)
        if done is not None:
            found = ranks.get(done[:cut] if cut else done)
            days = (rank(done) if found is None else found) - start_rank
            done_by_area[directorate, area].append(days)
            done_by_member[member].append(days)

    weekly: dict[str | None, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for (directorate, received), n in per_day.items():
        day = stamps.day(received)
        weekly[directorate][day - timedelta(days=day.weekday())] += n

    names = _member_names(session, {key[2] for key in counts})
    return PeriodReport(
        start=start,
        end=end,
        total=_roll_total(counts, first_by_area, done_by_area),
        areas=_roll_areas(counts, first_by_area, done_by_area),
        members=_roll_members(counts, first_by_member, done_by_member, names),
        weekly={k: dict(sorted(v.items())) for k, v in weekly.items()},
    )


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
    )


def _order(value: str | None) -> tuple[bool, str]:
    """Alphabetical, the missing ones last."""
    return (value is None, (value or "").casefold())


def _roll_total(
    counts: dict[tuple[Any, ...], _Counts],
    first: dict[tuple[Any, Any], list[int]],
    done: dict[tuple[Any, Any], list[int]],
) -> GroupStats:
    total = _Counts()
    for n in counts.values():
        total.add(n)
    return _stats("total", None, None, None, None, total,
                  (d for v in first.values() for d in v), (d for v in done.values() for d in v))


def _roll_areas(
    counts: dict[tuple[Any, ...], _Counts],
    first: dict[tuple[Any, Any], list[int]],
    done: dict[tuple[Any, Any], list[int]],
) -> list[GroupStats]:
    by_area: dict[tuple[Any, Any], _Counts] = defaultdict(_Counts)
    for (directorate, area, _member), n in counts.items():
        by_area[directorate, area].add(n)
    rows: list[GroupStats] = []
    for directorate in sorted({d for d, _ in by_area}, key=_order):
        areas = sorted((a for d, a in by_area if d == directorate), key=_order)
        subtotal = _Counts()
        for area in areas:
            subtotal.add(by_area[directorate, area])
        rows.append(_stats(
            "directorate", directorate, None, None, None, subtotal,
            (d for a in areas for d in first.get((directorate, a), ())),
            (d for a in areas for d in done.get((directorate, a), ())),
        ))
        for area in areas:
            rows.append(_stats(
                "service_area", directorate, area, None, None, by_area[directorate, area],
                first.get((directorate, area), ()), done.get((directorate, area), ()),
            ))
    return rows


def _roll_members(
    counts: dict[tuple[Any, ...], _Counts],
    first: dict[Any, list[int]],
    done: dict[Any, list[int]],
    names: dict[int, str],
) -> list[GroupStats]:
    by_member: dict[int, _Counts] = defaultdict(_Counts)
    for (_directorate, _area, member), n in counts.items():
        by_member[member].add(n)
    ordered = sorted(by_member, key=lambda m: (names.get(m, "").casefold(), m))
    return [
        _stats("member", None, None, m, names.get(m), by_member[m],
               first.get(m, ()), done.get(m, ()))
        for m in ordered
    ]


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


def _local_date_sql(
    column: Any, zone: ZoneInfo, dialect: str, first: date, last: date
) -> ColumnElement[Any]:
    """SQL for the council-local calendar date of a UTC timestamp column (NULL stays NULL).

    PostgreSQL converts with the zone (timestamptz AT TIME ZONE). SQLite has no zones: the
    zone's UTC offset is piecewise constant, so the offsets from just before `first` to just
    after `last` (today: no reply is later) become a CASE on the stored UTC text, added with
    date(col, '+N minutes'). The result is 'YYYY-MM-DD' text on SQLite, which compares with
    its stored dates.
    """
    if dialect == "postgresql":
        return cast(func.timezone(zone.key, column), Date)
    pieces = _utc_offsets(zone.key, first - timedelta(days=2), last + timedelta(days=2))
    stamp_type = Case.__table__.c.received_at.type  # type: ignore[attr-defined]
    if len(pieces) == 1:
        shift: Any = literal(f"{pieces[0][1]:+d} minutes")
    else:
        whens = [
            (column < literal(pieces[i + 1][0], stamp_type), f"{pieces[i][1]:+d} minutes")
            for i in range(len(pieces) - 1)
        ]
        shift = case(*whens, else_=f"{pieces[-1][1]:+d} minutes")
    return type_coerce(func.date(column, shift), String)


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


class _Stamps:
    """Working-day ranks of local dates, so that working days between two dates are a
    subtraction (the same as WorkingCalendar.working_days_between).

    Takes dates (PostgreSQL gives local dates) or, with `raw`, SQLite's stored UTC text
    ('YYYY-MM-DD HH:MM:SS.ffffff'), whose local date is looked up by its UTC hour (or minute,
    for zones with offsets or changes that are not whole hours) and remembered. Days outside
    first..last fall back to the calendar."""

    def __init__(self, calendar: WorkingCalendar, first: date, last: date, *, raw: bool) -> None:
        self.calendar = calendar
        self.first = first
        self.raw = raw
        self.ranks: dict[Any, int] = {first: 0}
        n = 0
        day = first + timedelta(days=1)
        while day <= last:
            if calendar.is_working_day(day):
                n += 1
            self.ranks[day] = n
            day += timedelta(days=1)
        pieces = _utc_offsets(calendar.zone.key, first, last)
        whole_hours = all(
            off % 60 == 0 and (at.minute, at.second) == (0, 0) for at, off in pieces
        )
        self.cut = (13 if whole_hours else 16) if raw else 0
        self.local: dict[str, date] = {}

    def day(self, value: date | str) -> date:
        if isinstance(value, date):
            return value
        key = value[: self.cut]
        found = self.local.get(key)
        if found is None:
            minute = key[14:16] if len(key) >= 16 else "00"
            utc_moment = datetime.fromisoformat(f"{key[:10]}T{key[11:13]}:{minute}+00:00")
            found = self.calendar.local_date(utc_moment)
            self.local[key] = found
            if self.cut:
                self.ranks[key] = self._rank(found)
        return found

    def rank(self, value: date | str) -> int:
        found = self.ranks.get(value[: self.cut] if self.cut else value)  # type: ignore[index]
        if found is None:
            if isinstance(value, date):
                return self._rank(value)
            self.day(value)
            return self.ranks[value[: self.cut]]
        return found

    def _rank(self, day: date) -> int:
        known = self.ranks.get(day)
        if known is not None:
            return known
        # Outside the prepared range: count from its first day.
        return self.calendar.working_days_between(self.first, day)
