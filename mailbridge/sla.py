"""Working days: weekends, England and Wales bank holidays, and configured closure days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays


class WorkingCalendar:
    """Counts working days in the council's time zone (invariant 6)."""

    def __init__(
        self,
        timezone: str = "Europe/London",
        country: str = "GB",
        subdivision: str | None = "ENG",
        closure_days: Iterable[date | str] = (),
        office_hours_end: time | str | None = None,
    ) -> None:
        self.zone = ZoneInfo(timezone)
        self.country = country
        self.subdivision = subdivision
        self.closures = frozenset(
            d if isinstance(d, date) else date.fromisoformat(d) for d in closure_days
        )
        if isinstance(office_hours_end, str):
            office_hours_end = time.fromisoformat(office_hours_end) if office_hours_end else None
        self.office_hours_end = office_hours_end
        self._working: dict[date, bool] = {}
        self._added: dict[tuple[date, int], date] = {}

    @lru_cache(maxsize=64)  # noqa: B019 - one calendar per process, a handful of years
    def _holidays(self, year: int) -> holidays.HolidayBase:
        # Without subdiv, Easter Monday and the August bank holiday are missing for England.
        return holidays.country_holidays(self.country, subdiv=self.subdivision, years=year)

    def is_working_day(self, day: date) -> bool:
        # Cached per day: a HolidayBase lookup converts its key each time, and deadlines,
        # reports and the scheduler ask about the same few hundred days again and again.
        known = self._working.get(day)
        if known is None:
            known = not (
                day.weekday() >= 5 or day in self.closures or day in self._holidays(day.year)
            )
            self._working[day] = known
        return known

    def local_date(self, moment: datetime) -> date:
        """The council's calendar date of a naive-UTC moment."""
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.astimezone(self.zone).date()

    def received_day(self, moment: datetime) -> date:
        """The day an email counts as received: its local date, or the next working day when
        it arrived after the office-hours cut-off or on a day that is not a working day."""
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        local = aware.astimezone(self.zone)
        day = local.date()
        if self.office_hours_end is None:
            return day
        if self.is_working_day(day) and local.time() < self.office_hours_end:
            return day
        return self.next_working_day(day)

    def next_working_day(self, day: date) -> date:
        """The first working day after `day`."""
        return self.add_working_days(day, 1)

    def add_working_days(self, start: date, days: int) -> date:
        """The date `days` working days after `start`; the start day itself is not counted."""
        key = (start, days)
        known = self._added.get(key)
        if known is not None:  # every case of a day gets the same few deadlines
            return known
        current = start
        remaining = days
        while remaining > 0:
            current += timedelta(days=1)
            if self.is_working_day(current):
                remaining -= 1
        if len(self._added) < 10_000:
            self._added[key] = current
        return current

    def due_date(self, received_at: datetime, working_days: int) -> date:
        """The deadline `working_days` after the day the email counts as received."""
        return self.add_working_days(self.received_day(received_at), working_days)

    def non_working_days(self, year: int) -> list[tuple[date, str]]:
        """Every day of `year` that is not a working day, with why (`calendar show`)."""
        named = self._holidays(year)
        out: list[tuple[date, str]] = []
        day = date(year, 1, 1)
        while day.year == year:
            if day in named:
                out.append((day, str(named.get(day))))
            elif day in self.closures:
                out.append((day, "Council closure"))
            elif day.weekday() >= 5:
                out.append((day, "Weekend"))
            day += timedelta(days=1)
        return out

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (negative when end < start)."""
        if end == start:
            return 0
        sign = 1 if end > start else -1
        lo, hi = (start, end) if sign > 0 else (end, start)
        count = 0
        day = lo
        while day < hi:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return sign * count


def calendar_from_config(council: object) -> WorkingCalendar:
    """Build the calendar from a CouncilConfig (kept loose to avoid an import cycle)."""
    return WorkingCalendar(
        timezone=council.timezone,  # type: ignore[attr-defined]
        country=council.holidays_country,  # type: ignore[attr-defined]
        subdivision=council.holidays_subdivision or None,  # type: ignore[attr-defined]
        closure_days=council.closure_days,  # type: ignore[attr-defined]
        office_hours_end=council.office_hours_end or None,  # type: ignore[attr-defined]
    )
