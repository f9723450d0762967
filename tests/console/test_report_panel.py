"""The scrutiny report laid out for a panel: the sentences at the top, the key figures, the
charts, the tables, and the page `report --format html` writes (data set: test_reports.py)."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import Engine

from mailbridge.console import report_charts, report_render
from mailbridge.console.report_render import Headline, sentences
from mailbridge.console.reports import NO_DIRECTORATE, PeriodReport, Ratio, Slice, next_slice
from mailbridge.delivery.templating import shipped_templates
from tests.console.test_reports import AH, ARGS, ET, build, cli, home, ok, seeded

__all__ = ["home", "seeded"]  # fixtures of test_reports, used here

CS = "Children's Services"

# ---------------------------------------------------------------------------------------------
# What the figures say, in words


@pytest.mark.parametrize(
    ("headline", "said"),
    [
        (Headline(0, Ratio(0, 0), {}), ["No enquiries were received in this period."]),
        (
            Headline(0, Ratio(0, 0), {}, previous_received=0, previous_on_time=Ratio(0, 0)),
            ["No enquiries were received in this period, nor in the previous one."],
        ),
        (
            Headline(0, Ratio(0, 0), {}, previous_received=1, previous_on_time=Ratio(1, 1)),
            ["No enquiries were received in this period (1 enquiry in the previous one)."],
        ),
        (
            Headline(1, Ratio(0, 0), {}, target=90),
            [
                "1 enquiry was received.",
                "It has not been answered yet, and its deadline has not passed.",
                "It is not overdue.",
            ],
        ),
        (
            Headline(1, Ratio(0, 1), {CS: 1}, target=90),
            [
                "1 enquiry was received.",
                "It was not answered within target.",
                "It is overdue now, in Children's Services.",
            ],
        ),
        (
            Headline(2, Ratio(1, 1), {}, previous_received=2, previous_on_time=Ratio(0, 0)),
            [
                "2 enquiries were received, about as many as in the previous period (2).",
                "The one answered or past its deadline was answered within target.",
                "None is overdue now.",
            ],
        ),
        (
            Headline(
                9958,
                Ratio(6572, 9958),
                {CS: 400, "Highways": 230},
                target=90,
                previous_received=9600,
                previous_on_time=Ratio(61, 100),
            ),
            [
                "9,958 enquiries were received, 4% more than in the previous period (9,600).",
                "66% were answered within target, against a target of 90% (61% in the previous "
                "period).",
                "630 are overdue now, most of them in Children's Services (400).",
            ],
        ),
        (
            Headline(90, Ratio(40, 80), {CS: 3, "Highways": 2, NO_DIRECTORATE: 2}, None, 100),
            [
                "90 enquiries were received, 10% fewer than in the previous period (100).",
                "Of the 80 answered or past their deadline, 50% were answered within target.",
                "7 are overdue now, the most in Children's Services (3).",
            ],
        ),
        (
            Headline(12, Ratio(6, 12), {CS: 5, "Highways": 5, "Waste": 1}, 90, 0, Ratio(0, 0)),
            [
                "12 enquiries were received, and none in the previous period.",
                "50% were answered within target, against a target of 90%.",
                "11 are overdue now, most in Children's Services and in Highways (5 each).",
            ],
        ),
        (
            Headline(200, Ratio(179, 200), {NO_DIRECTORATE: 1}, target=90),
            [
                "200 enquiries were received.",
                "89.5% were answered within target, against a target of 90%.",
                "1 is overdue now, with no directorate.",
            ],
        ),
        (
            Headline(30, Ratio(27, 30), {"Highways": 3}, target=90),
            [
                "30 enquiries were received.",
                "90% were answered within target, against a target of 90%.",
                "3 are overdue now, all in Highways.",
            ],
        ),
    ],
)
def test_sentences(headline: Headline, said: list[str]) -> None:
    assert sentences(headline) == said


@pytest.mark.parametrize(
    ("ratio", "target", "shown"),
    [
        (Ratio(179, 200), 90.0, "89.5%"),  # would round onto the target it misses
        (Ratio(1799, 2000), 90.0, "89.9%"),  # 89.95: never rounded up to the target
        (Ratio(179, 200), None, "90%"),
        (Ratio(9, 10), 90.0, "90%"),
        (Ratio(2, 3), 90.0, "67%"),
        (Ratio(0, 0), 90.0, "-"),
    ],
)
def test_a_share_never_rounds_onto_a_target_it_misses(
    ratio: Ratio, target: float | None, shown: str
) -> None:
    assert ratio.against(target) == shown


# ---------------------------------------------------------------------------------------------
# Charts


@pytest.fixture
def empty(engine: Engine) -> PeriodReport:
    return build(engine).current


def slices(
    period: PeriodReport,
    *parts: Slice,
    step: str = "month",
    start: date | None = None,
    end: date | None = None,
) -> PeriodReport:
    """`period` with these slices, from the first one's start to the last one's end unless
    told otherwise."""
    return replace(
        period,
        step=step,
        timeline=list(parts),
        start=start or parts[0].start,
        end=end or next_slice(parts[-1].start, step) - timedelta(days=1),
    )


def test_beyond_seven_directorates_the_smallest_share_one_stack(empty: PeriodReport) -> None:
    counts = {f"D{i}": 10 * (i + 1) for i in range(9)} | {None: 5}
    period = slices(empty, Slice(date(2026, 4, 1), counts, Ratio(0, 0)))
    found = report_charts.stacks(period)
    assert [name for name, _ in found] == [
        "D8",
        "D7",
        "D6",
        "D5",
        "D4",
        "D3",
        "Other directorates",
    ]
    assert found[-1][1] == [30 + 20 + 10 + 5]
    assert sum(c[0] for _, c in found) == sum(counts.values())


def test_the_year_is_shown_under_the_first_slice_and_each_january(empty: PeriodReport) -> None:
    months = [date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]
    period = slices(empty, *(Slice(m, {}, Ratio(0, 0)) for m in months))
    assert report_charts.tick_labels(period) == ["Nov\n2026", "Dec", "Jan\n2027", "Feb"]
    weeks = slices(empty, Slice(date(2026, 12, 28), {}, Ratio(0, 0)), step="week")
    assert report_charts.tick_labels(weeks) == ["28 Dec\n2026"]


# ---------------------------------------------------------------------------------------------
# The page


class Page(HTMLParser):
    """What a reader of the page finds: the key figures, the sentences, images, tables."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.figures: dict[str, dict[str, str]] = {}
        self.sentences: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables: list[list[list[str]]] = []
        self.hidden_depth: list[str] = []
        self._field: str | None = None
        self._figure: dict[str, str] = {}
        self._in_summary = False
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = (found.get("class") or "").split()
        if tag == "img":
            self.images.append({k: v or "" for k, v in found.items()})
        for name in ("label", "value", "detail", "previous"):
            if f"app-key-figure__{name}" in classes:
                self._field = name
        if "app-report-summary" in classes:
            self._in_summary = True
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("th", "td"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._field = None
        if tag == "li" and self._figure:
            self.figures[self._figure.pop("label")] = self._figure
            self._figure = {}
        if tag == "div":
            self._in_summary = False
        if tag in ("th", "td") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._field:
            self._figure[self._field] = self._figure.get(self._field, "") + data.strip()
        if self._in_summary and data.strip():
            self.sentences.append(data.strip())
        if self._cell is not None:
            self._cell.append(data)


def test_the_page_leads_with_the_reports_own_figures(home: Path, tmp_path: Path) -> None:
    home.write_text(home.read_text() + "\n[report]\non_time_target_percent = 75\n")
    target = tmp_path / "report.html"
    ok(cli(home, *ARGS, "--format", "html", "--output", str(target), "--compare-previous"))
    html = target.read_text(encoding="utf-8")
    page = Page(html)
    figures = {label: f["value"] for label, f in page.figures.items()}
    # the same numbers as the report (test_reports.py: 8 received, 4/6 on time, ...)
    assert figures == {
        "Enquiries received": "8",
        "Answered within target": "67%",
        "Median working days to first response": "4",
        "Overdue now": "2",
        "Acknowledged within target": "88%",  # 7/8
    }
    on_time = page.figures["Answered within target"]
    assert on_time["detail"] == "4 of 6 answered or past their deadline; the target is 75%"
    assert on_time["previous"] == "50% in the previous period"
    assert page.sentences == [
        "8 enquiries were received, 300% more than in the previous period (2).",
        "Of the 6 answered or past their deadline, 67% were answered within target, against "
        "a target of 75% (50% in the previous period).",
        "2 are overdue now, all in Environment and Transport.",  # C4 and C8
    ]


def test_the_page_is_one_document_fetching_nothing(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    ok(cli(home, *ARGS, "--format", "html", "--output", str(target)))
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count("<style>") == 1
    assert "<script" not in html and " style=" not in html
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from elsewhere
    page = Page(html)
    assert len(page.images) == 2
    for image in page.images:
        data = image["src"].removeprefix("data:image/png;base64,")
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n")
        assert len(image["alt"]) > 40
    assert "@page" in html and "size: A4" in html


def test_the_tables_hold_every_figure_narrowly(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    ok(cli(home, *ARGS, "--format", "html", "--output", str(target)))
    page = Page(target.read_text(encoding="utf-8"))
    headings = {cell for table in page.tables for cell in table[0]}
    for metric in report_render.METRICS:
        assert report_render.SHORT.get(metric.heading, metric.heading) in headings
    assert max(len(table[0]) for table in page.tables) <= 7
    rows = {row[0]: row[1:] for table in page.tables[2:3] for row in table[1:]}
    assert rows["All cases"][:2] == ["8", "67% 4 of 6"]
    assert rows["Highways"][0] == "4"
    assert rows["Waste"][2] == "-"  # no responses yet


def test_the_body_partial_is_fit_for_the_web_console(
    seeded: tuple[Engine, dict[str, int]],
) -> None:
    """Included as the web console will: its own Jinja environment, autoescaping; a name in
    the directory cannot become markup, and nothing needs inline script or style."""
    engine, _ = seeded
    report = build(engine, compare_previous=True)
    period = report.current
    evil = '<img src=x onerror="alert(1)">'
    members = [replace(m, member=evil) for m in period.members]
    report = replace(report, current=replace(period, members=members))
    env = Environment(loader=FileSystemLoader(str(shipped_templates())), autoescape=True)
    html = env.get_template(report_render.PANEL_TEMPLATE).render(
        report_panel=report_render.panel(report)
    )
    assert evil not in html and "&lt;img src=x onerror=" in html
    assert not re.search(r"<(script|style)\b|<[^>]*\s(style|on\w+)=", html)
    assert '<div class="app-report-appendix" hidden>' in html  # the tables printed
    for name in (ET, AH, "Adult Social Care"):
        assert name in html


def test_an_empty_period_still_makes_a_page(engine: Engine) -> None:
    report = build(engine)
    html = report_render.render_html(report)
    page = Page(html)
    assert page.figures["Enquiries received"]["value"] == "0"
    assert page.sentences == ["No enquiries were received in this period."]
    assert len(page.images) == 2


def test_a_slice_the_period_covers_in_part_says_so(empty: PeriodReport) -> None:
    mondays = (date(2026, 8, 31), date(2026, 9, 7), date(2026, 11, 30))
    parts = [Slice(monday, {}, Ratio(0, 0)) for monday in mondays]
    # Tue 1 Sep to Mon 30 Nov
    period = slices(empty, *parts, step="week", start=date(2026, 9, 1), end=date(2026, 11, 30))
    assert [period.days_in(p) for p in parts] == [6, 7, 1]
    assert [report_charts.part_note(period, p) for p in parts] == ["(6 days)", None, "(1 day)"]
    labels = ["31 Aug\n2026\n(6 days)", "7 Sep", "30 Nov\n(1 day)"]
    assert report_charts.tick_labels(period) == labels


def test_each_chart_says_what_it_shows(seeded: tuple[Engine, dict[str, int]]) -> None:
    engine, _ = seeded
    report = replace(build(engine), target_percent=90.0)
    on_time, volume = report_render.panel(report).charts
    assert on_time.summary == (
        "Highest: 7 Dec 2026, 100%; lowest: 21 Dec 2026, 0%. 3 of 4 weeks reached the 90% target."
    )
    assert "90% target" in on_time.alt and on_time.src.startswith("data:image/png;base64,")
    assert [[c.text for c in row.cells] for row in on_time.table.rows] == [
        ["1", "1", "100%"],
        ["2", "2", "100%"],
        ["0", "2", "0%"],
        ["1", "1", "100%"],
    ]
    assert volume.summary == (
        "Environment and Transport received the most: 5 of 8 (63%). The busiest week was "
        "21 Dec 2026 (3); the quietest 7 Dec 2026 (1)."
    )
    assert volume.table.headings == [
        "Week beginning",
        ET,
        AH,
        "(no directorate)",
        "Total",
    ]
    assert [row.cells[-1].text for row in volume.table.rows] == ["1", "2", "3", "2"]
