"""Working days: weekends, England and Wales bank holidays, and configured closure days."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from mailbridge.files import private_folder


class WorkingCalendar:
    """Counts working days in the council's time zone (invariant 6)."""

    def __init__(
        self,
        timezone: str = "Europe/London",
        country: str = "GB",
        subdivision: str | None = "ENG",
        closure_days: Iterable[date | str] = (),
        office_hours_end: time | str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.zone = ZoneInfo(timezone)
        self.cache_dir = cache_dir  # where a year's bank holidays are kept once computed
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
    def _holidays(self, year: int) -> dict[date, str]:
        return bank_holidays(self.country, self.subdivision, year, self.cache_dir)

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

    def rules(self) -> dict[str, object]:
        """What decides which days are working days, and in which zone: what a moment counted
        on this calendar depends on (deadlines/stages.py fingerprints it)."""
        return {
            "zone": self.zone.key,
            "holidays": [self.country, self.subdivision, _holidays_version()],
            "closures": sorted(day.isoformat() for day in self.closures),
        }

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


def bank_holidays(
    country: str, subdivision: str | None, year: int, cache_dir: Path | None = None
) -> dict[date, str]:
    """The year's holidays by date, from the holidays package, kept in `cache_dir`.

    The package's first lookup imports every country it knows (~0.1 s of every command
    here); the year's dates, once computed, are read back from a small JSON file named by
    country, subdivision, year and the package's version, so an upgrade recomputes them.
    Without a cache (or if it cannot be read or written) they are computed each time.
    """
    version = _holidays_version()
    path = None
    if cache_dir is not None and version is not None:
        name = f"holidays-{country}-{subdivision or 'all'}-{year}-{version}.json"
        path = Path(cache_dir) / name
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            return {date.fromisoformat(d): str(n) for d, n in json.loads(path.read_text()).items()}
    import holidays  # only on a cache miss: see above

    # Without subdiv, Easter Monday and the August bank holiday are missing for England.
    computed = holidays.country_holidays(country, subdiv=subdivision, years=year)
    named = {d: str(n) for d, n in computed.items()}
    if path is not None:
        with contextlib.suppress(OSError):
            private_folder(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({d.isoformat(): n for d, n in sorted(named.items())}))
            os.replace(tmp, path)  # whole or absent: readers never see half a file
    return named


@cache
def _holidays_version() -> str | None:
    """The installed holidays package's version, from its dist-info folder's name (asking
    importlib.metadata costs ~25 ms); None if it cannot be told, and then nothing is cached."""
    spec = importlib.util.find_spec("holidays")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(next(iter(spec.submodule_search_locations))).parent
    found = [p.name for p in site.glob("holidays-*.dist-info")]
    if len(found) != 1:
        return None
    return found[0].removeprefix("holidays-").removesuffix(".dist-info")


def calendar_from_config(council: object, data_dir: Path | None = None) -> WorkingCalendar:
    """Build the calendar from a CouncilConfig (kept loose to avoid an import cycle); with
    the data directory, bank holidays are kept under its cache/ once computed."""
    return WorkingCalendar(
        timezone=council.timezone,  # type: ignore[attr-defined]
        country=council.holidays_country,  # type: ignore[attr-defined]
        subdivision=council.holidays_subdivision or None,  # type: ignore[attr-defined]
        closure_days=council.closure_days,  # type: ignore[attr-defined]
        office_hours_end=council.office_hours_end or None,  # type: ignore[attr-defined]
        cache_dir=Path(data_dir) / "cache" if data_dir is not None else None,
    )
