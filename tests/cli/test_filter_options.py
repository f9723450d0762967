"""Every filter option of `cases list` and `export` reaches the CaseFilter the command builds:
each given alone changes that one field, so an option renamed on one side or left out of
the call fails here. What each filter selects is tested in tests/console/test_console.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from mailbridge.console import filters
from mailbridge.console.filters import CaseFilter
from tests.helpers.cli import CONFIG, invoke, ok

# The options both commands take: the option as typed, the field, the value it holds.
SHARED = [
    (("--type", "Pothole"), "type", "Pothole"),
    (("--ref", "2026-0004"), "ref", "2026-0004"),
    (("--service-area", "Highways"), "service_area", "Highways"),
    (("--surname", "Patel"), "surname", "Patel"),
    (("--directorate", "Adults and Health"), "directorate", "Adults and Health"),
    (("--email", "jane@home.example.org"), "email", "jane@home.example.org"),
    (("--district", "Blaby"), "district", "Blaby"),
    (("--status", "in progress"), "status", "in_progress"),
    (("--officer", "priya.shah@example.gov.uk"), "officer", "priya.shah@example.gov.uk"),
    (("--member", "Jane Smith"), "member", "Jane Smith"),
    (("--overdue",), "overdue", True),
    (("--due-within", "3"), "due_within", 3),
    (("--created-from", "2026-01-01"), "created_from", date(2026, 1, 1)),
    (("--created-to", "2026-01-31"), "created_to", date(2026, 1, 31)),
    (("--search", "gully"), "search", "gully"),
    (("--sort", "due"), "sort", "due"),
    (("--desc",), "desc", True),
    (("--asc",), "desc", False),
]
# A page of the list; an export is every matching case.
LIST_ONLY = [
    (("--limit", "7"), "limit", 7),
    (("--page", "2"), "page", 2),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("filter-options")
    url = f"sqlite:///{root / 'mailbridge.db'}"
    path = root / "config.toml"
    path.write_text(CONFIG.replace('url = "sqlite:///./mailbridge.db"', f'url = "{url}"'))
    return path


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[CaseFilter]]:
    """The CaseFilter each command hands to the query, in place of running it."""
    seen: list[CaseFilter] = []

    def record(_session: Any, wanted: CaseFilter, *_: Any) -> list[Any]:
        seen.append(wanted)
        return []

    monkeypatch.setattr(filters, "list_cases", record)
    monkeypatch.setattr(filters, "iter_cases", record)
    monkeypatch.setattr(filters, "count_cases", lambda *_: 0)
    yield seen


def cases_list(config: Path, built: list[CaseFilter], *options: str) -> CaseFilter:
    ok(invoke("cases", "list", "--config", str(config), *options))
    return built.pop()


def export(config: Path, built: list[CaseFilter], *options: str) -> CaseFilter:
    target = config.parent / "cases.csv"
    ok(invoke("export", "--config", str(config), "--output", str(target), *options))
    return built.pop()


def test_the_options_cover_every_field_of_the_filter() -> None:
    every = {f.name for f in fields(CaseFilter)}
    assert {name for _, name, _ in SHARED + LIST_ONLY} == every
    assert {name for _, name, _ in LIST_ONLY} == {"limit", "page"}


def named(param: object) -> str | None:
    return " ".join(param) if isinstance(param, tuple) else None


def test_no_option_is_no_filter(config: Path, built: list[CaseFilter]) -> None:
    assert cases_list(config, built) == CaseFilter()
    assert export(config, built) == CaseFilter(limit=None)


@pytest.mark.parametrize(("options", "name", "value"), SHARED + LIST_ONLY, ids=named)
def test_each_option_of_cases_list_sets_its_field_alone(
    config: Path, built: list[CaseFilter], options: tuple[str, ...], name: str, value: object
) -> None:
    assert cases_list(config, built, *options) == replace(CaseFilter(), **{name: value})


@pytest.mark.parametrize(("options", "name", "value"), SHARED, ids=named)
def test_each_option_of_export_sets_its_field_alone(
    config: Path, built: list[CaseFilter], options: tuple[str, ...], name: str, value: object
) -> None:
    everything = CaseFilter(limit=None)
    assert export(config, built, *options) == replace(everything, **{name: value})
