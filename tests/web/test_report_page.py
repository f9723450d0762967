"""The scrutiny report page: the same figures as `mailbridge report`, for any period asked
for in the URL, with downloads in the command's formats, each shown or downloaded report an
audit record."""

from __future__ import annotations

import io
from datetime import date

from openpyxl import load_workbook
from sqlmodel import Session, select

from mailbridge.console import report_render
from mailbridge.console.reports import build_report, year_to_date
from mailbridge.store.models import AuditRecord
from tests.web.conftest import Web

PERIOD = "from=2026-11-01&to=2026-11-30"


def _report(web: Web, start: date, end: date, compare: bool):
    with Session(web.engine) as session:
        return build_report(
            session,
            web.council.services.calendar,
            start,
            end,
            compare_previous=compare,
            target_percent=web.config.report.on_time_target_percent,
        )


def _audit(web: Web) -> list[AuditRecord]:
    with Session(web.engine) as session:
        return list(session.exec(select(AuditRecord).where(AuditRecord.action == "report")))


def test_the_page_shows_the_commands_figures_for_the_period_in_the_url(web: Web) -> None:
    web.pothole()  # received Tue 24 Nov 2026
    client, _ = web.signed_in("coordinator")
    answer = client.get(f"/report?{PERIOD}&compare=no")
    assert answer.status_code == 200, answer.text
    built = _report(web, date(2026, 11, 1), date(2026, 11, 30), compare=False)
    panel = report_render.panel(built)
    assert panel.title in answer.text
    for figure in panel.figures:
        assert figure.label in answer.text
        assert figure.value in answer.text
    for sentence in panel.sentences:
        assert sentence.replace("'", "&#39;") in answer.text
    assert 'href="/report/panel.css"' in answer.text
    [record] = _audit(web)
    assert record.actor == "member.support@example.gov.uk" and record.channel == "web"
    assert record.detail == "scrutiny report 2026-11-01 to 2026-11-30; page in the web console"


def test_without_a_period_it_shows_the_financial_year_so_far_against_the_year_before(
    web: Web,
) -> None:
    client, _ = web.signed_in("coordinator")
    answer = client.get("/report")
    assert answer.status_code == 200
    start, end = year_to_date(date(2026, 12, 1))
    assert (start, end) == (date(2026, 4, 1), date(2026, 12, 1))
    assert 'value="2026-04-01"' in answer.text and 'value="2026-12-01"' in answer.text
    [record] = _audit(web)
    assert "2026-04-01 to 2026-12-01, with the period before" in record.detail


def test_a_bad_period_is_one_error_on_the_form(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    for query, words in (
        ("from=2026-02-31&to=2026-03-01", "From: '2026-02-31' is not a date"),
        ("from=2026-03-01&to=2026-02-01", "To (2026-02-01) is before From (2026-03-01)"),
    ):
        answer = client.get(f"/report?{query}")
        assert answer.status_code == 400
        assert "govuk-error-summary" in answer.text
        assert words.replace("'", "&#39;") in answer.text
    assert _audit(web) == []


def test_downloads_are_the_commands_files_and_are_audited(web: Web) -> None:
    web.pothole()
    client, _ = web.signed_in("coordinator")
    built = _report(web, date(2026, 11, 1), date(2026, 11, 30), compare=True)
    csv = client.get(f"/report/download?format=csv&{PERIOD}&compare=yes")
    assert csv.status_code == 200
    assert csv.headers["content-disposition"].startswith("attachment;")
    assert csv.text == report_render.render_csv(built)
    xlsx = client.get(f"/report/download?format=xlsx&{PERIOD}")
    book = load_workbook(io.BytesIO(xlsx.content), read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    assert list(rows[0]) == report_render.flat_headings(built)
    html = client.get(f"/report/download?format=html&{PERIOD}")
    assert html.headers["content-disposition"].startswith("attachment;")
    assert report_render.panel(built).title in html.text
    assert client.get("/report/download?format=exe").status_code == 400
    details = [r.detail for r in _audit(web)]
    assert details == [
        f"scrutiny report 2026-11-01 to 2026-11-30, with the period before; {fmt} "
        "downloaded from the web console"
        for fmt in ("csv", "xlsx", "html")
    ]


def test_the_panels_stylesheet_is_served_as_css(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    answer = client.get("/report/panel.css")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/css")
    assert "@media print" in answer.text


def test_another_site_cannot_start_a_download_in_a_coordinators_name(web: Web) -> None:
    client, _ = web.signed_in("coordinator")
    for path in (f"/report/download?format=csv&{PERIOD}", "/export?format=csv"):
        refused = client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403, path
        own = client.get(path, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 200, path
    with Session(web.engine) as session:
        actions = [r.action for r in session.exec(select(AuditRecord))]
    assert actions.count("report") == 1 and actions.count("export") == 1
