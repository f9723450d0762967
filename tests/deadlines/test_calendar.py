"""Working days in England and Wales: the day of receipt is never counted."""

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mailbridge.deadlines import calendar
from mailbridge.deadlines.calendar import WorkingCalendar, bank_holidays

CAL = WorkingCalendar("Europe/London", "GB", "ENG", closure_days=["2026-12-30"])


@pytest.mark.parametrize(
    ("start", "days", "expected", "why"),
    [
        (date(2026, 11, 24), 1, date(2026, 11, 25), "an ordinary Tuesday"),
        (date(2026, 11, 27), 1, date(2026, 11, 30), "Friday to Monday skips the weekend"),
        (date(2026, 11, 28), 1, date(2026, 11, 30), "received on a Saturday"),
        (date(2026, 4, 2), 1, date(2026, 4, 7), "Good Friday and Easter Monday 2026"),
        (date(2026, 8, 28), 1, date(2026, 9, 1), "the August bank holiday needs subdiv ENG"),
        (date(2026, 12, 24), 1, date(2026, 12, 29), "Boxing Day 2026 is a Saturday: 28th off"),
        (date(2026, 12, 24), 2, date(2026, 12, 31), "a configured closure day is skipped"),
        (date(2026, 11, 24), 10, date(2026, 12, 8), "the default response deadline"),
        (date(2026, 11, 24), 0, date(2026, 11, 24), "zero days is the same day"),
    ],
)
def test_add_working_days(start: date, days: int, expected: date, why: str) -> None:
    assert CAL.add_working_days(start, days) == expected, why


def test_without_subdivision_easter_monday_would_be_missed() -> None:
    national = WorkingCalendar("Europe/London", "GB", None)
    assert national.is_working_day(date(2026, 4, 6))
    assert not CAL.is_working_day(date(2026, 4, 6))


def test_receipt_date_is_the_council_local_date() -> None:
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST).
    assert CAL.local_date(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 1)
    assert CAL.due_date(datetime(2026, 6, 30, 23, 30, tzinfo=UTC), 1) == date(2026, 7, 2)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 11, 24), date(2026, 11, 24), 0),
        (date(2026, 11, 24), date(2026, 12, 8), 10),
        (date(2026, 12, 8), date(2026, 11, 24), -10),
        (date(2026, 11, 27), date(2026, 11, 30), 1),
    ],
)
def test_working_days_between(start: date, end: date, expected: int) -> None:
    assert CAL.working_days_between(start, end) == expected


# --- bank holidays kept once computed ---------------------------------------------------


@pytest.mark.parametrize(("country", "subdivision"), [("GB", "ENG"), ("GB", "SCT"), ("GB", None)])
def test_kept_bank_holidays_are_the_packages_own(
    tmp_path: Path, country: str, subdivision: str | None
) -> None:
    for year in (2025, 2026, 2027):
        fresh = bank_holidays(country, subdivision, year)
        assert bank_holidays(country, subdivision, year, tmp_path) == fresh  # computed, kept
        assert bank_holidays(country, subdivision, year, tmp_path) == fresh  # read back
    assert len(list(tmp_path.glob(f"holidays-{country}-*.json"))) == 3


def test_a_calendar_with_a_cache_counts_the_same_days(tmp_path: Path) -> None:
    cached = WorkingCalendar("Europe/London", "GB", "ENG", cache_dir=tmp_path)
    for _ in range(2):  # the second calendar reads the file the first one wrote
        again = WorkingCalendar("Europe/London", "GB", "ENG", cache_dir=tmp_path)
        assert again.add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 29)
        plain = WorkingCalendar("Europe/London", "GB", "ENG")
        assert again.non_working_days(2026) == plain.non_working_days(2026)
        assert cached.add_working_days(date(2026, 4, 2), 1) == date(2026, 4, 7)


def test_a_kept_year_is_read_without_importing_the_holidays_package(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mailbridge.deadlines.calendar import bank_holidays\n"
        f"days = bank_holidays('GB', 'ENG', 2026, Path({str(tmp_path)!r}))\n"
        "print(len(days), 'holidays' in sys.modules)\n"
    )
    run = [sys.executable, "-c", program]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    second = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    count = str(len(bank_holidays("GB", "ENG", 2026)))
    assert first.stdout.split() == [count, "True"]  # computed: the package was needed
    assert second.stdout.split() == [count, "False"]


def test_another_version_of_the_package_computes_the_year_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = calendar._holidays_version()
    bank_holidays("GB", "ENG", 2026, tmp_path)
    monkeypatch.setattr(calendar, "_holidays_version", lambda: "9999.1")
    assert bank_holidays("GB", "ENG", 2026, tmp_path) == bank_holidays("GB", "ENG", 2026)
    names = {p.name.rsplit("-", 1)[1] for p in tmp_path.iterdir()}
    assert names == {f"{installed}.json", "9999.1.json"}


def test_without_a_known_version_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calendar, "_holidays_version", lambda: None)
    assert bank_holidays("GB", "ENG", 2026, tmp_path) == bank_holidays("GB", "ENG", 2026)
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_or_unwritable_cache_only_costs_the_computation(tmp_path: Path) -> None:
    fresh = bank_holidays("GB", "ENG", 2026)
    bank_holidays("GB", "ENG", 2026, tmp_path)
    [kept] = tmp_path.iterdir()
    kept.write_text('{"2026-12-25": ')  # cut short
    assert bank_holidays("GB", "ENG", 2026, tmp_path) == fresh
    assert json.loads(kept.read_text())["2026-12-25"] == "Christmas Day"  # written whole again
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    assert bank_holidays("GB", "ENG", 2026, blocked / "cache") == fresh
