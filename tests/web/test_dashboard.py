"""The coordinators' dashboard on SQLite and PostgreSQL: each filter in the URL selects what
`cases list` selects for the same CaseFilter, the form shows the URL's values back, sort
and pages, the counts link to their lists, bad values get an error summary (400), and a
page costs the same few queries however many cases it shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from mailbridge.console import filters
from mailbridge.console.filters import CaseFilter
from mailbridge.store.models import AuditRecord
from tests.helpers.council import ANN, JANE, SAM
from tests.web.cases import TODAY, seed_cases
from tests.web.conftest import Web

SIZE = 25  # [web] page_size by default
pytestmark = pytest.mark.usefixtures("fixed_clock")


@pytest.fixture
def board(web: Web) -> Web:
    seed_cases(web.engine, web.council.person_id)
    return web


def references(html: str) -> list[str]:
    """The cases the table lists, in its order."""
    return re.findall(r'<a class="govuk-link" href="/cases/(MQ-\d{4}-\d{5})">', html)


def showing(html: str) -> tuple[int, int, int]:
    found = re.search(r"Showing ([\d,]+) to ([\d,]+) of ([\d,]+) cases?", html)
    assert found, html
    first, last, total = (int(n.replace(",", "")) for n in found.groups())
    return first, last, total


def expected(web: Web, wanted: CaseFilter) -> tuple[list[str], int]:
    """What `cases list` gives for a filter: a page and the total."""
    calendar = web.council.services.calendar
    with Session(web.engine) as session:
        rows = filters.list_cases(session, wanted, calendar, TODAY)
        total = filters.count_cases(session, wanted, calendar, TODAY)
    return [r.reference for r in rows], total


def dashboard(client: Any, query: dict[str, str] | str = "") -> Any:
    text = query if isinstance(query, str) else urlencode(query)
    answer = client.get(f"/?{text}" if text else "/")
    return answer


# A URL's values and the CaseFilter `cases list` gets from the same options, each meant to
# narrow the 40 seeded cases to some but not all.
FILTERS: list[tuple[dict[str, str], CaseFilter]] = [
    ({"type": "care review"}, CaseFilter(type="care review")),
    ({"ref": "0011"}, CaseFilter(ref="0011")),
    ({"service_area": "HIGHWAYS"}, CaseFilter(service_area="HIGHWAYS")),
    ({"surname": " smithson "}, CaseFilter(surname="smithson")),
    (
        {"directorate": "Environment and Transport"},
        CaseFilter(directorate="Environment and Transport"),
    ),
    # Jane's other address; then the delegate who sent two.
    ({"email": "jane.smith@home.example.org"}, CaseFilter(email="jane.smith@home.example.org")),
    ({"email": "tom.baker@example.gov.uk"}, CaseFilter(email="tom.baker@example.gov.uk")),
    ({"district": "blaby"}, CaseFilter(district="blaby")),
    ({"status": "in_progress"}, CaseFilter(status="in_progress")),
    ({"status": "In progress"}, CaseFilter(status="in_progress")),
    ({"officer": ANN}, CaseFilter(officer=ANN)),  # lead on some, additional on others
    ({"member": "Li Chen"}, CaseFilter(member="Li Chen")),  # hers, and two of others'
    ({"overdue": "yes"}, CaseFilter(overdue=True)),
    ({"due_within": "2"}, CaseFilter(due_within=2)),
    ({"created_from": "2026-11-20"}, CaseFilter(created_from=date(2026, 11, 20))),
    ({"created_to": "2026-11-01"}, CaseFilter(created_to=date(2026, 11, 1))),
    ({"search": "GULLY"}, CaseFilter(search="GULLY")),
    (
        {"service_area": "Highways", "status": "new", "officer": SAM},
        CaseFilter(service_area="Highways", status="new", officer=SAM),
    ),
]


def test_each_filter_narrows_as_cases_list_would(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    everything = showing(dashboard(client).text)[2]
    assert everything == 40
    for query, wanted in FILTERS:
        answer = dashboard(client, query)
        assert answer.status_code == 200, (query, answer.text)
        page, total = expected(board, replace(wanted, limit=SIZE))
        assert 0 < total < everything, query  # the filter narrows, so the test can fail
        assert references(answer.text) == page, query
        assert showing(answer.text) == (1, len(page), total), query


def test_a_filter_matching_nothing_says_so(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    answer = dashboard(client, {"search": "no such words"})
    assert answer.status_code == 200
    assert references(answer.text) == []
    assert "No cases match these filters" in answer.text
    assert "Export CSV" not in answer.text


def test_the_form_shows_the_values_from_the_url(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    query = {
        "type": "Pothole",
        "district": "Harborough",
        "status": "new",
        "member": "Jane",
        "created_from": "2026-10-01",
        "overdue": "yes",
        "sort": "due",
    }
    html = dashboard(client, query).text
    assert 'id="type" name="type" type="text" value="Pothole"' in html
    assert 'id="district" name="district" type="text" value="Harborough"' in html
    assert '<option value="new" selected>New</option>' in html
    assert 'name="member" type="text" value="Jane"' in html
    assert 'name="created_from" type="text" value="2026-10-01"' in html
    assert re.search(r'name="overdue" type="checkbox" value="yes"\s*checked', html)
    assert '<details class="govuk-details mb-more-filters" open>' in html  # folded filters in use
    assert '<input type="hidden" name="sort" value="due">' in html  # Apply keeps the order
    # Without a value from the URL, nothing is filled in or ticked.
    bare = dashboard(client).text
    assert 'name="type" type="text" value=""' in bare
    assert "selected>" not in bare and "checked" not in bare
    assert '<details class="govuk-details mb-more-filters">' in bare


def test_sort_by_each_sortable_column_both_ways(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    for key, heading in [
        ("reference", "Reference"),
        ("member", "Name"),
        ("created", "Created"),
        ("status", "Status"),
        ("due", "Deadline"),
    ]:
        for order in ("asc", "desc"):
            query = {"sort": key, "order": order, "page": "2"}
            html = dashboard(client, query).text
            wanted = CaseFilter(sort=key, desc=order == "desc", page=2, limit=SIZE)
            assert references(html) == expected(board, wanted)[0], query
            sorted_as = "ascending" if order == "asc" else "descending"
            header = re.search(
                r'<th scope="col" class="govuk-table__header" aria-sort="(\w+)">'
                r'<a class="govuk-link mb-sort" href="([^"]+)">(\w+)</a>',
                html,
            )
            assert header, html
            assert header.group(1) == sorted_as and header.group(3) == heading
            # Its link sorts the other way, from the first page.
            again = parse_qs(urlsplit(header.group(2).replace("&amp;", "&")).query)
            flipped = "desc" if order == "asc" else "asc"
            assert again == {"sort": [key], "order": [flipped]}
            assert html.count("aria-sort=") == 1
    assert references(dashboard(client, {"sort": "reference"}).text)[0] == "MQ-2026-00101"


def test_pages_and_their_links(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    first = dashboard(client, {"status": "", "sort": "reference"}).text
    assert showing(first) == (1, 25, 40)
    second_href = re.search(r'href="([^"]+)" rel="next"', first)
    assert second_href
    second = client.get(second_href.group(1).replace("&amp;", "&")).text
    assert showing(second) == (26, 40, 40)
    refs = references(first) + references(second)
    assert refs == [f"MQ-2026-{n:05d}" for n in range(101, 141)]  # every case once, in order
    assert 'aria-current="page">2</a>' in second
    assert 'rel="prev"' in second and 'rel="next"' not in second
    # A page past the last says how many there are.
    past = dashboard(client, {"page": "7"}).text
    assert references(past) == [] and "No cases on page 7: 40 cases make 2 pages" in past


def test_the_page_size_comes_from_the_config(tmp_path: Any, migrated_db_url: str) -> None:
    from mailbridge.store.db import make_engine
    from tests.web.conftest import make_web

    engine = make_engine(migrated_db_url)
    try:
        web = make_web(tmp_path, engine, web={"page_size": 5})
        seed_cases(engine, web.council.person_id, n=12)
        client, _ = web.signed_in("coordinator")
        html = dashboard(client, {"page": "3"}).text
        assert showing(html) == (11, 12, 12)
        assert len(references(html)) == 2
        client.close()
    finally:
        engine.dispose()


def test_each_count_links_to_its_list(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    html = dashboard(client).text
    counts = re.findall(
        r'<a class="govuk-link mb-count-link" href="([^"]+)"><span class="mb-count">(\d+)</span>'
        r" ([^<]+)</a>",
        html,
    )
    assert [label for _, _, label in counts] == [
        "New",
        "In progress",
        "Completed",
        "Overdue",
        "Due within 2 working days",
    ]
    for href, number, label in counts:
        listed = client.get(href.replace("&amp;", "&")).text
        assert showing(listed)[2] == int(number) > 0, label
    assert dict((label, href) for href, _, label in counts)["Overdue"] == "/?overdue=yes"


def test_bad_values_show_the_form_again_with_an_error_summary(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    answer = dashboard(client, {"created_from": "31/02/2026", "due_within": "soon", "type": "X"})
    assert answer.status_code == 400
    html = answer.text
    assert "<title>Error: Dashboard" in html
    summary = html[html.index('class="govuk-error-summary"') : html.index("<h1")]
    links = re.findall(r'<a href="#([\w-]+)">([^<]+)</a>', summary)
    assert [target for target, _ in links] == ["created-from", "due-within"]  # the form's order
    assert "Created from: &#39;31/02/2026&#39; is not a date" in links[0][1]
    assert 'id="created-from-error"' in html and 'value="31/02/2026"' in html
    assert 'name="type" type="text" value="X"' in html  # the rest kept as typed
    assert references(html) == []  # no table under a form in error
    for query in (
        {"created_from": "2026-12-01", "created_to": "2026-11-01"},
        {"page": "0"},
        {"sort": "colour"},
        {"status": "open"},
        {"page": "1" + "0" * 30},
        {"due_within": "1000000000"},
    ):
        answer = dashboard(client, query)
        assert answer.status_code == 400, query
        assert "There is a problem" in answer.text


def test_each_view_is_recorded_as_a_list_by_the_signed_in_coordinator(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    dashboard(client, {"district": "Blaby", "page": "1"})
    with Session(board.engine) as session:
        last = session.exec(select(AuditRecord).order_by(col(AuditRecord.id).desc())).first()
    assert last is not None
    assert (last.action, last.actor, last.channel) == (
        "cases.list",
        "member.support@example.gov.uk",
        "web",
    )
    assert last.detail.startswith("filter: district=Blaby; page 1 (25 a page); ")


@contextmanager
def statements(web: Web) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql)

    event.listen(web.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(web.engine, "before_cursor_execute", count)


def test_a_page_reads_the_same_few_queries_however_many_rows(board: Web) -> None:
    client, _ = board.signed_in("coordinator")
    dashboard(client)  # warm
    with statements(board) as few:
        html = dashboard(client, {"member": JANE})
    assert 0 < len(references(html.text)) < 25
    with statements(board) as full:
        html = dashboard(client, {"page": "1"})
    assert len(references(html.text)) == 25
    with statements(board) as last:
        html = dashboard(client, {"page": "2"})
    assert len(references(html.text)) == 15
    # The session, the counts, one page and (on a full page) one count of every page.
    assert len(full) <= len(few) + 1
    assert len(last) <= len(few)
    assert len(full) <= 8, full
