"""The dashboard's Export on SQLite and PostgreSQL: exactly the filtered cases, the CSV byte
for byte what `mailbridge export` writes, formulas neutralised in CSV and XLSX alike, the
XLSX file gone once sent, and every download recorded in the audit (who, which filter, how
many)."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlmodel import Session, col, select

from mailbridge.console import filters
from mailbridge.console.filters import CaseFilter
from mailbridge.privacy import access
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.store.models import AuditRecord
from tests.helpers.council import SUPPORT, council_cli, write_council_config
from tests.web.cases import FORMULAS, seed_cases
from tests.web.conftest import Web

pytestmark = pytest.mark.usefixtures("fixed_clock")


@pytest.fixture
def board(web: Web) -> Web:
    seed_cases(web.engine, web.council.person_id)
    return web


def last_audit(web: Web) -> AuditRecord:
    with Session(web.engine) as session:
        record = session.exec(select(AuditRecord).order_by(col(AuditRecord.id).desc())).first()
    assert record is not None
    return record


def csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def test_csv_is_byte_for_byte_the_cli_export_of_the_same_filter(
    board: Web, tmp_path: Path, migrated_db_url: str
) -> None:
    client, _ = board.signed_in("coordinator")
    answer = client.get("/export?format=csv&directorate=Environment+and+Transport&sort=due")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="cases-2026-12-01.csv"'
    config = write_council_config(tmp_path, migrated_db_url)
    target = tmp_path / "cli.csv"
    result = council_cli(
        config,
        "--as",
        SUPPORT,
        "export",
        "--format",
        "csv",
        "--output",
        str(target),
        "--directorate",
        "Environment and Transport",
        "--sort",
        "due",
    )
    assert result.exit_code == 0, result.output
    assert answer.content == target.read_bytes()
    assert len(csv_rows(answer.content)) == 1 + 20  # the header and half the cases


def test_export_is_every_filtered_case_not_the_page(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    html = client.get("/?created_to=2026-11-28&page=2&sort=reference&order=desc").text
    found = re.findall(r'href="(/export\?[^"]+)"', html)
    links = [href.replace("&amp;", "&") for href in found]
    assert [link.rsplit("format=", 1)[1] for link in links] == ["csv", "xlsx"]
    assert all("page=" not in link and "created_to=2026-11-28" in link for link in links)
    rows = csv_rows(client.get(links[0]).content)[1:]
    total = int(re.search(r"of (\d+) cases", html).group(1))  # type: ignore[union-attr]
    assert len(rows) == total == 37  # all but the last three days' cases, not one page
    assert max(r[9] for r in rows) < "2026-11-29"
    references = [r[0] for r in rows]
    assert references == sorted(references, reverse=True)  # the dashboard's order


def test_formulas_are_neutralised_in_csv_and_xlsx(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    rows = csv_rows(client.get("/export?format=csv&sort=reference").content)
    subjects = {r[0]: r[2] for r in rows[1:]}
    assert subjects["MQ-2026-00131"] == "'" + FORMULAS[0]
    assert subjects["MQ-2026-00132"] == "'" + FORMULAS[1]
    book = load_workbook(io.BytesIO(client.get("/export?format=xlsx&sort=reference").content))
    cells = {row[0]: row[2] for row in book["Cases"].iter_rows(min_row=2, values_only=True)}
    assert cells["MQ-2026-00131"] == "'" + FORMULAS[0]
    assert cells["MQ-2026-00132"] == "'" + FORMULAS[1]


def test_xlsx_holds_the_same_rows_and_its_file_is_removed(
    board: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    client, _ = board.signed_in("coordinator")
    query = "district=Blaby&sort=due"
    answer = client.get(f"/export?format=xlsx&{query}")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="cases-2026-12-01.xlsx"'
    assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(answer.content))["Cases"]
    xlsx = [list(row) for row in sheet.iter_rows(values_only=True)]
    text = csv_rows(client.get(f"/export?format=csv&{query}").content)
    assert xlsx[0] == text[0]
    assert len(xlsx) == len(text) > 2

    def shown(value: Any) -> str:
        if hasattr(value, "hour"):
            return f"{value:%Y-%m-%d %H:%M}" if value.hour or value.minute else f"{value:%Y-%m-%d}"
        return "" if value is None else str(value)

    assert [[shown(v) for v in row] for row in xlsx[1:]] == text[1:]
    assert list(scratch.iterdir()) == []  # the temporary file went once sent


def test_each_download_is_recorded_with_who_which_filter_and_how_many(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    calendar = board.council.services.calendar
    with Session(board.engine) as session:
        late = filters.count_cases(session, CaseFilter(district="Blaby", overdue=True), calendar)
        closed = filters.count_cases(session, CaseFilter(status="closed"), calendar)
    assert late == 1 and closed > 1
    client.get("/export?format=csv&district=Blaby&overdue=yes")
    record = last_audit(board)
    assert (record.action, record.actor, record.channel) == ("export", SUPPORT, "web")
    assert record.detail == "filter: district=Blaby overdue; 1 case; csv download"
    assert record.origin == "testclient"
    client.get("/export?format=xlsx&status=closed")
    assert last_audit(board).detail == f"filter: status=closed; {closed} cases; xlsx download"


def test_a_download_cut_short_is_recorded_with_what_was_read(
    board: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access, "CHUNK_BYTES", 200)  # several chunks from 40 cases
    calendar = board.council.services.calendar
    actor = Actor(SUPPORT, Channel.WEB, "testclient", board.people["coordinator"])
    every = CaseFilter(limit=None)
    whole = list(access.export_csv_download(board.engine, every, calendar, actor))
    assert len(whole) > 2
    assert len(csv_rows(b"".join(whole))) == 41
    assert last_audit(board).detail == "filter: every case; 40 cases; csv download"
    chunks = access.export_csv_download(board.engine, every, calendar, actor)
    next(chunks)
    next(chunks)
    chunks.close()  # the browser went away
    assert re.fullmatch(
        r"filter: every case; csv download stopped after \d+ cases read", last_audit(board).detail
    )


def test_bad_values_are_one_clear_line_never_a_file(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    answer = client.get("/export?format=csv&created_to=2026-02-31")
    assert answer.status_code == 400
    assert "Created to: &#39;2026-02-31&#39; is not a date" in answer.text
    assert "content-disposition" not in answer.headers
    answer = client.get("/export?format=pdf")
    assert answer.status_code == 400
    assert "Export as CSV or XLSX only" in answer.text
