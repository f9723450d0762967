"""The scrutiny report's reading: one pass over a stretch of cases, counted into a `Tally`.

A `Tally` holds what the report adds up, for any set of cases: the 15 additive counts (see
`Counts`) and the working days to first response and to completion (as histograms) of each
(directorate, service area) and of each member, and per local day of receipt the cases
received per directorate and those assessed and within target for responses. Tallies add
and subtract, so a period's figures are the months counted ahead of time
(console/report_months.py) plus what `count` reads live.

`count` reads, for each case received between two local dates (all of them, or only those
live or only those settled on a given day: see LIVE_UNTIL in store/models.py), only its
group keys, moments, deadlines, status and tallies, never whole rows; a second query counts
its holding replies and extensions (from an index of events by case and kind). Dates
travel as day numbers: PostgreSQL converts moments to local dates with the zone itself and
sends days since the stretch's eve; SQLite sends its stored text, whose local date is looked
up by the UTC hour in a table built from the zone's UTC offsets (see _Days). Working days are
then a difference of precomputed ranks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import add
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Date,
    Integer,
    String,
    and_,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.models import LIVE_UNTIL, REPORT_EVENTS, Case, CaseStatus, Event

OPEN_STATUSES = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
HOLDING_REPLY, DEADLINE_EXTENDED = REPORT_EVENTS

# Which of a stretch's cases `count` reads: every one, or only those whose figures can still
# change by the passing of days after a given day (open, or completed without an
# acknowledgement or a first response, with a deadline on or after it), or the others.
ALL, LIVE, SETTLED = "all", "live", "settled"


@dataclass
class Counts:
    """Additive counts for one group (see console/reports.py's docstring for each)."""

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


COUNTS = len(fields(Counts))

# One group of a Tally: its COUNTS counts in Counts field order, then the working days to
# first response and to completion, as {working days: cases}.
Group = tuple[list[int], dict[int, int], dict[int, int]]
# One local day of a Tally: cases received per directorate, assessed for responses within
# target, and within it.
Day = tuple[dict[str | None, int], list[int]]


@dataclass
class Tally:
    """What the report adds up for a set of cases (see the module docstring)."""

    areas: dict[tuple[str | None, str | None], Group] = field(default_factory=dict)
    members: dict[int, Group] = field(default_factory=dict)
    days: dict[int, Day] = field(default_factory=dict)  # by date.toordinal()

    def add(self, other: Tally, sign: int = 1) -> None:
        for mine, theirs in ((self.areas, other.areas), (self.members, other.members)):
            for key, (counts, first, done) in theirs.items():
                _add_group(mine, key, counts, first, done, sign)
        for ordinal, (received, assessed) in other.days.items():
            day = self.days.get(ordinal)
            if day is None:
                day = self.days[ordinal] = ({}, [0, 0])
            _add_counter(day[0], received, sign)
            day[1][0] += sign * assessed[0]
            day[1][1] += sign * assessed[1]

    def trim(self, start: date, end: date) -> None:
        """Only the days from `start` to `end`, and only groups and values that have cases:
        what is left after a subtraction is exactly what counting the stretch would give."""
        first, last = start.toordinal(), end.toordinal()
        for ordinal in [o for o in self.days if not first <= o <= last]:
            del self.days[ordinal]
        for ordinal, (received, assessed) in list(self.days.items()):
            _drop_zeros(received)
            if not received and assessed == [0, 0]:
                del self.days[ordinal]
        for groups in (self.areas, self.members):
            for key, (counts, first_days, done_days) in list(groups.items()):
                if counts[0] == 0:
                    del groups[key]  # type: ignore[attr-defined]
                    continue
                _drop_zeros(first_days)
                _drop_zeros(done_days)

    def to_json(self) -> str:
        """Compact: every {key: n} as a flat [key, n, key, n, ...] list."""
        return json.dumps(
            {
                "areas": [
                    [d, a, c, _flat(f), _flat(n)] for (d, a), (c, f, n) in self.areas.items()
                ],
                "members": [[m, c, _flat(f), _flat(n)] for m, (c, f, n) in self.members.items()],
                "days": [[o, _flat(r), a] for o, (r, a) in self.days.items()],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Tally:
        data = json.loads(text)
        return cls(
            areas={(d, a): (c, _pairs(f), _pairs(n)) for d, a, c, f, n in data["areas"]},
            members={m: (c, _pairs(f), _pairs(n)) for m, c, f, n in data["members"]},
            days={o: (_pairs(r), a) for o, r, a in data["days"]},
        )


def _flat(counter: Mapping[Any, int]) -> list[Any]:
    return [x for pair in counter.items() for x in pair]


def _pairs(flat: list[Any]) -> dict[Any, int]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _add_counter(mine: dict[Any, int], theirs: Mapping[Any, int], sign: int) -> None:
    get = mine.get
    for key, n in theirs.items():
        mine[key] = get(key, 0) + sign * n


def _drop_zeros(counter: dict[Any, int]) -> None:
    for key in [k for k, n in counter.items() if n == 0]:
        del counter[key]


def _add_group(
    groups: dict[Any, Group],
    key: Any,
    counts: list[int],
    first: Mapping[int, int],
    done: Mapping[int, int],
    sign: int,
) -> None:
    found = groups.get(key)
    if found is None:
        found = groups[key] = ([0] * COUNTS, {}, {})
    mine = found[0]
    for i, n in enumerate(counts):
        mine[i] += sign * n
    _add_counter(found[1], first, sign)
    _add_counter(found[2], done, sign)


# ---------------------------------------------------------------------------------------------
# Counting


def count(
    conn: Connection,
    calendar: WorkingCalendar,
    first: date,
    last: date,
    today: date,
    which: str = ALL,
    day: date | None = None,
) -> Tally:
    """The Tally of the cases received from `first` to `last` (local dates, both included),
    `which` of them (ALL, or LIVE or SETTLED on `day`)."""
    if which != ALL and day is None:
        raise ValueError(f"counting the {which} cases needs the day they are {which} on")
    lo = local_midnight(calendar.zone, first)
    hi = local_midnight(calendar.zone, last + timedelta(days=1))
    c = Case.__table__.c  # type: ignore[attr-defined]
    chosen = and_(c.received_at >= lo, c.received_at < hi)
    live_until = literal_column(LIVE_UNTIL, Date())
    if which == LIVE:  # the few whose last deadline is still ahead: its index finds them
        received = type_coerce(_Unindexed(c.received_at), c.received_at.type)
        chosen = and_(live_until >= day, received >= lo, received < hi)
    elif which == SETTLED:  # by receipt: most of them are
        chosen = and_(chosen, or_(live_until.is_(None), live_until < day))
    keys = (c.directorate, c.service_area, c.member_id)
    days = _Days(
        calendar,
        first - timedelta(days=1),
        max(today, last) + timedelta(days=90),
        raw=conn.dialect.name != "postgresql",
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
    ).where(chosen)

    # Per group key: the 15 Counts figures in field order, then the working days to first
    # response and to completion of its cases, then the timeline's lists (see _new_group).
    groups: dict[tuple[Any, Any, Any], list[Any]] = {}
    timeline = _Timeline()
    result = conn.execute(rows)
    try:
        # The DBAPI's own tuples: none of these columns has a result processor, and a Row per
        # case would cost more than everything done with it below.
        _tally(result.cursor, groups, timeline, days, today)
    finally:
        result.close()

    # The chosen cases first, then each one's events from the index of events by case and
    # kind: left to itself, SQLite's planner reads every event of the kinds counted and
    # looks each case up instead.
    cases = select(c.id, *keys).where(chosen).cte("chosen").prefix_with("MATERIALIZED")
    e = Event.__table__.c  # type: ignore[attr-defined]
    by = (cases.c.directorate, cases.c.service_area, cases.c.member_id)
    events = (
        select(*by, e.kind, func.count())
        .select_from(cases.join(Event.__table__, e.case_id == cases.c.id))  # type: ignore[attr-defined]
        .where(e.kind.in_(REPORT_EVENTS))
        .group_by(*by, e.kind)
    )
    for *key, kind, n in conn.execute(events):
        group = groups.get(tuple(key))  # type: ignore[arg-type]
        if group is None:
            group = groups[tuple(key)] = _new_group([], [], [])  # type: ignore[index]
        group[11 if kind == HOLDING_REPLY else 12] += int(n)
    return _fold(groups, timeline, days)


class _Unindexed(FunctionElement[Any]):
    """A column SQLite must not look up by an index: its planner, knowing no more of a range
    than that it has two ends, would read a year of cases by their moment of receipt
    rather than the few live ones by their last deadline (PostgreSQL's knows better)."""

    name = "unindexed"
    inherit_cache = True


@compiles(_Unindexed)
def _as_is(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Unindexed, "sqlite")
def _plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)  # SQLite's "no index" mark


def _fold(groups: dict[tuple[Any, Any, Any], list[Any]], timeline: _Timeline, days: _Days) -> Tally:
    """The groups and timeline _tally kept, by (directorate, area, member), as a Tally."""
    by_area: dict[Any, list[Any]] = {}
    by_member: dict[Any, list[Any]] = {}
    for (directorate, area, member), group in groups.items():
        for into, key in ((by_area, (directorate, area)), (by_member, member)):
            found = into.get(key)
            if found is None:
                into[key] = [group[:COUNTS], list(group[COUNTS]), list(group[COUNTS + 1])]
            else:
                found[0] = list(map(add, found[0], group[:COUNTS]))
                found[1] += group[COUNTS]
                found[2] += group[COUNTS + 1]
    tally = Tally(
        areas={k: (c, Counter(f), Counter(d)) for k, (c, f, d) in by_area.items()},
        members={k: (c, Counter(f), Counter(d)) for k, (c, f, d) in by_member.items()},
    )
    origin = days.first.toordinal()

    def day(number: int) -> Day:
        found = tally.days.get(origin + number)
        if found is None:
            found = tally.days[origin + number] = ({}, [0, 0])
        return found

    for directorate, numbers in timeline.received.items():
        for number, n in Counter(numbers).items():
            day(number)[0][directorate] = n
    for slot, numbers in enumerate((timeline.assessed, timeline.on_time)):
        for number, n in Counter(numbers).items():
            day(number)[1][slot] += n
    return tally


def _tally(
    rows: Iterable[Sequence[Any]],
    groups: dict[tuple[Any, Any, Any], list[Any]],
    timeline: _Timeline,
    days: _Days,
    today: date,
) -> None:
    """Adds each case of `rows` (the columns of count's query) to its group and the
    timeline."""
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
            received_in = timeline.received.setdefault(directorate, [])
            group = groups[key] = _new_group(received_in, timeline.assessed, timeline.on_time)
        group[0] += 1
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
    for group in groups.values():  # what the loop left out: responded (and assessed)
        group[3] = len(group[15])
        group[5] += group[3]
        group[7] += group[3]


@dataclass
class _Timeline:
    """Day numbers of receipt, for the slices: of every case by directorate, of those
    assessed for responses within target, and of those within it."""

    received: dict[str | None, list[int]] = field(default_factory=dict)
    assessed: list[int] = field(default_factory=list)
    on_time: list[int] = field(default_factory=list)


def _new_group(received: list[int], assessed: list[int], on_time: list[int]) -> list[Any]:
    """The COUNTS counts, the working days to first response and to completion, and the
    timeline's lists (shared by every group of a directorate: one append a case)."""
    return [0] * COUNTS + [[], [], received, assessed, on_time]


# ---------------------------------------------------------------------------------------------
# Dates and working days


def local_midnight(zone: ZoneInfo, day: date) -> datetime:
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
