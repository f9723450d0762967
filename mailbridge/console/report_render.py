"""The scrutiny report as a Rich table, CSV, XLSX, or HTML laid out for a scrutiny panel.

Everything here only lays out a `reports.Report`; the figures are computed in reports.py.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mailbridge.console import report_charts
from mailbridge.console.reports import (
    NO_DIRECTORATE,
    GroupStats,
    PeriodReport,
    Ratio,
    Report,
    Slice,
)
from mailbridge.delivery.templating import shipped_templates
from mailbridge.files import private_open
from mailbridge.spreadsheet import neutralise

FORMATS = ("table", "csv", "xlsx", "html")
SECTIONS = (("areas", "By directorate and service area"), ("members", "By member"))
NOTES = (
    "Cases are counted in the period in which they were received (council time zone).",
    "Within target: the first response (a holding reply counts) on or before the original "
    "deadline; the second figure allows extensions. A case counts once it has been answered "
    "or its deadline has passed; closed (merged or converted) cases with no answer are left out.",
    "Working days exclude weekends, bank holidays and closure days. Medians and 90th "
    "percentiles: linear interpolation between closest ranks (Excel PERCENTILE.INC).",
    "Overdue now: still open and past the deadline in force.",
    "Satisfaction: the average of the members' answers (1 to 5) to the question sent when a "
    "case is completed, and how many answered.",
)


@dataclass(frozen=True)
class Metric:
    heading: str
    value: Callable[[GroupStats], Any]  # an int, a float or None, or a Ratio
    # "count", "ratio" (three columns in CSV and XLSX), "days" or "average" (None: no value)
    kind: str = "count"


METRICS = (
    Metric("Received", lambda g: g.received),
    Metric("Acknowledged within target", lambda g: g.acknowledged, "ratio"),
    Metric("Responded", lambda g: g.responded, "ratio"),
    Metric("Responded within target", lambda g: g.on_time, "ratio"),
    Metric("Within extended target", lambda g: g.on_time_extended, "ratio"),
    Metric("Median working days to first response", lambda g: g.to_first_response.median, "days"),
    Metric(
        "90th percentile working days to first response", lambda g: g.to_first_response.p90, "days"
    ),
    Metric("Median working days to completion", lambda g: g.to_completion.median, "days"),
    Metric("90th percentile working days to completion", lambda g: g.to_completion.p90, "days"),
    Metric("Overdue now", lambda g: g.overdue_now),
    Metric("Holding replies", lambda g: g.holding_replies),
    Metric("Extensions", lambda g: g.extensions),
    Metric("Reopened", lambda g: g.reopened),
    Metric("Chasers", lambda g: g.chasers),
    Metric("Average satisfaction (1-5)", lambda g: g.satisfaction, "average"),
    Metric("Satisfaction answers", lambda g: g.satisfaction_answers),
)
SHORT = {
    "Acknowledged within target": "Acknowledged in target",
    "Responded within target": "Responded in target",
    "Within extended target": "In extended target",
    "Median working days to first response": "Median days to 1st response",
    "90th percentile working days to first response": "90th pct days to 1st response",
    "Median working days to completion": "Median days to completion",
    "90th percentile working days to completion": "90th pct days to completion",
    "Average satisfaction (1-5)": "Satisfaction (1-5)",
}


def period_text(period: PeriodReport) -> str:
    return f"{period.start:%d %b %Y} to {period.end:%d %b %Y}"


def show(value: Any) -> str:
    """A figure as a person reads it: ratios with their counts, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _group_cells(group: GroupStats) -> tuple[str, str, str]:
    """Directorate, service area and member columns for one row."""
    if group.level == "member":
        return ("", "", group.label)
    if group.level == "service_area":
        return (group.directorate or "(no directorate)", group.label, "")
    if group.level == "directorate":
        return (group.label, "(all)", "")
    return ("(all)", "(all)", "(all)")


def _rows(report: Report) -> list[tuple[str, GroupStats, GroupStats | None]]:
    rows = [("total", *pair) for pair in report.paired("total")]
    for section, _title in SECTIONS:
        rows += [(section, *pair) for pair in report.paired(section)]
    return rows


# ---------------------------------------------------------------------------------------------
# Table


def render_table(report: Report) -> Group:
    """Rich tables: the council, then per directorate and service area, then per member."""
    title = f"Member enquiries received {period_text(report.current)}"
    if report.previous:
        title += f" (below each figure: {period_text(report.previous)})"
    parts: list[Any] = [Text(title, style="bold")]
    for section, heading in (("total", "All cases"), *SECTIONS):
        table = Table(title=heading, show_lines=report.previous is not None)
        table.add_column("Group", no_wrap=True)
        for metric in METRICS:
            table.add_column(SHORT.get(metric.heading, metric.heading), justify="right")
        for now, before in report.paired(section):
            label = now.label if before is None else (now.label or before.label)
            if now.level == "service_area":
                label = "  " + label
            cells: list[Any] = [Text(label, style="bold" if now.level != "service_area" else "")]
            for metric in METRICS:
                cell = Text(show(metric.value(now)))
                if report.previous is not None:
                    cell.append("\n" + (show(metric.value(before)) if before else "-"), "dim")
                cells.append(cell)
            table.add_row(*cells)
        parts.append(table)
    parts.append(Text("\n".join(NOTES), style="dim"))
    return Group(*parts)


# ---------------------------------------------------------------------------------------------
# CSV and XLSX: one row per group, numbers as numbers


def flat_headings(report: Report) -> list[str]:
    names: list[str] = []
    for metric in METRICS:
        if metric.kind == "ratio":
            names += [metric.heading, f"{metric.heading} (of)", f"{metric.heading} (%)"]
        else:
            names.append(metric.heading)
    headings = ["Period", "Level", "Directorate", "Service area", "Member", *names]
    if report.previous is not None:
        headings += ["Previous period", *(f"Previous: {n}" for n in names)]
    return headings


def _flat_values(group: GroupStats | None) -> list[Any]:
    """Numbers for one group; a group with no cases in that period has zero counts."""
    values: list[Any] = []
    for metric in METRICS:
        value = metric.value(group) if group is not None else None
        if metric.kind == "ratio":
            ratio = value if isinstance(value, Ratio) else Ratio(0, 0)
            pct = ratio.percent
            values += [ratio.hit, ratio.of, None if pct is None else round(pct, 1)]
        elif metric.kind == "count":
            values.append(value or 0)
        else:
            values.append(value)
    return values


def flat_rows(report: Report) -> list[list[Any]]:
    rows = []
    for _section_name, now, before in _rows(report):
        row: list[Any] = [
            period_text(report.current),
            now.level,
            *_group_cells(now),
            *_flat_values(now),
        ]
        if report.previous is not None:
            row += [period_text(report.previous), *_flat_values(before)]
        rows.append(row)
    return rows


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(flat_headings(report))
    for row in flat_rows(report):
        # Names come from the directory: text that would run as a formula is quoted
        # before a figure becomes text, so numbers stay numbers.
        writer.writerow(["" if v is None else show(neutralise(v)) for v in row])
    return out.getvalue()


def write_xlsx(report: Report, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = "Report"
    headings = flat_headings(report)
    sheet.append(headings)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in flat_rows(report):
        sheet.append([neutralise(v) for v in row])
    for index, heading in enumerate(headings, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(12, min(len(heading), 40))
    sheet.freeze_panes = "F2"
    notes = book.create_sheet("Notes")
    notes.append(["Period", period_text(report.current)])
    if report.previous is not None:
        notes.append(["Previous period", period_text(report.previous)])
    notes.append(["Figures as at", report.today.isoformat()])
    notes.append(["Time zone", report.timezone])
    for line in NOTES:
        notes.append([line])
    notes.column_dimensions["A"].width = 100
    with private_open(path, "wb") as stream:
        book.save(stream)


# ---------------------------------------------------------------------------------------------
# HTML: the panel's layout, for the web console's report page and `report --format html`
#
# panel() gathers everything the page shows as plain strings; the templates only lay it out.
# The body, PANEL_TEMPLATE, is a partial the web console includes in its GOV.UK layout (no
# script, no style attribute, images as data: URIs); STANDALONE_TEMPLATE wraps it in a whole
# page with its own styles, fit to print on A4.

PANEL_TEMPLATE = "web/report_panel.html"
PANEL_CSS = "web/report_panel.css"  # the panel's own classes, on screen and in print
STANDALONE_TEMPLATE = "report_standalone.html"

# The tables' columns: a narrow main table, and the rest of METRICS in two detail tables.
MAIN_COLUMNS = (
    "Received",
    "Responded within target",
    "Median working days to first response",
    "Overdue now",
)
DETAIL_COLUMNS = (
    (
        "Timeliness",
        (
            "Acknowledged within target",
            "Responded",
            "Within extended target",
            "90th percentile working days to first response",
            "Median working days to completion",
            "90th percentile working days to completion",
        ),
    ),
    (
        "Activity",
        (
            "Holding replies",
            "Extensions",
            "Reopened",
            "Chasers",
            "Average satisfaction (1-5)",
            "Satisfaction answers",
        ),
    ),
)
BY_HEADING = {m.heading: m for m in METRICS}


@dataclass(frozen=True)
class Cell:
    text: str
    second: str | None = None  # the counts under a percentage: "6,432 of 9,808"
    previous: str | None = None  # the same figure in the previous period


@dataclass(frozen=True)
class PanelRow:
    heading: str  # the group's name, the row's header
    level: str  # "total", "directorate", "service_area" or "member"
    cells: list[Cell]


@dataclass(frozen=True)
class PanelTable:
    caption: str
    headings: list[str]  # the first names the rows' header column
    rows: list[PanelRow]


@dataclass(frozen=True)
class KeyFigure:
    label: str
    value: str
    detail: str
    previous: str | None = None


@dataclass(frozen=True)
class Chart:
    question: str  # the one question it answers: its heading
    src: str  # a data: URI
    alt: str
    summary: str  # the answer in words, under the chart
    table: PanelTable  # the chart's figures, behind a toggle


@dataclass(frozen=True)
class Section:
    heading: str
    main: PanelTable
    details: list[PanelTable]
    toggle: str  # the details' summary line
    printed: str  # on paper, where the toggled tables went
    folded: bool = False  # the main table behind a toggle too (one row per member)


@dataclass(frozen=True)
class Panel:
    """Everything the report page shows, as text: the context of PANEL_TEMPLATE."""

    title: str
    period: str
    previous_period: str | None
    as_at: str
    timezone: str
    figures: list[KeyFigure]
    sentences: list[str]
    charts: list[Chart]
    sections: list[Section]
    notes: list[str]


def panel(report: Report) -> Panel:
    """The report laid out for a scrutiny panel: headline figures and what they say, two
    charts, then the tables. Render PANEL_TEMPLATE with it as `report_panel`."""
    target = report.target_percent
    notes = list(NOTES)
    if target is not None:
        notes.append(
            f"The target line: the council aims to answer {target:g}% of enquiries within target."
        )
    return Panel(
        title=f"Member enquiries: {period_text(report.current)}",
        period=period_text(report.current),
        previous_period=period_text(report.previous) if report.previous else None,
        as_at=f"{report.today:%d %b %Y}",
        timezone=report.timezone,
        figures=key_figures(report),
        sentences=sentences(Headline.of(report)),
        charts=charts(report),
        sections=[
            _section(report, "areas", "By directorate and service area", folded=False),
            _section(report, "members", "By member", folded=True),
        ],
        notes=notes,
    )


def render_html(report: Report) -> str:
    """The whole page `report --format html` writes."""
    return _templates().get_template(STANDALONE_TEMPLATE).render(report_panel=panel(report))


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(shipped_templates())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# --- figures and words --------------------------------------------------------------------


def _counts(ratio: Ratio) -> str:
    return f"{ratio.hit:,} of {ratio.of:,}"


def _number(value: Any) -> str:
    """A count with thousands separators, a median as it is, '-' for none."""
    return f"{value:,}" if isinstance(value, int) else show(value)


def key_figures(report: Report) -> list[KeyFigure]:
    """The figures the page leads with, from the whole council's row."""
    now = report.current.total
    before = report.previous.total if report.previous else None
    target = report.target_percent

    def previous(text: str | None) -> str | None:
        return None if before is None else f"{text} in the previous period"

    on_time = _counts(now.on_time) + " answered or past their deadline"
    if target is not None:
        on_time += f"; the target is {target:g}%"
    p90 = now.to_first_response.p90
    figures = [
        KeyFigure(
            "Enquiries received",
            f"{now.received:,}",
            f"{report.current.days:,} days",
            previous(before and f"{before.received:,}"),
        ),
        KeyFigure(
            "Answered within target",
            now.on_time.against(target),
            on_time,
            previous(before and before.on_time.against(target)),
        ),
        KeyFigure(
            "Median working days to first response",
            show(now.to_first_response.median),
            "" if p90 is None else f"9 in 10 within {show(p90)}",
            previous(before and show(before.to_first_response.median)),
        ),
        KeyFigure(
            "Overdue now",
            f"{now.overdue_now:,}",
            "still open after their deadline",
            previous(before and f"{before.overdue_now:,}"),
        ),
        KeyFigure(
            "Acknowledged within target",
            now.acknowledged.percent_text,
            _counts(now.acknowledged),
            previous(before and before.acknowledged.percent_text),
        ),
    ]
    if now.satisfaction_answers or (before and before.satisfaction_answers):
        figures.append(
            KeyFigure(
                "Members' satisfaction",
                "-" if now.satisfaction is None else f"{show(now.satisfaction)} out of 5",
                _plural(now.satisfaction_answers, "answer", "answers"),
                previous(before and show(before.satisfaction)),
            )
        )
    return figures


@dataclass(frozen=True)
class Headline:
    """What the sentences at the top are made of."""

    received: int
    on_time: Ratio
    overdue: dict[str, int]  # overdue now, per directorate's label (those with any)
    target: float | None = None
    previous_received: int | None = None  # None: no previous period asked for
    previous_on_time: Ratio | None = None

    @classmethod
    def of(cls, report: Report) -> Headline:
        now = report.current.total
        before = report.previous.total if report.previous else None
        return cls(
            received=now.received,
            on_time=now.on_time,
            overdue={g.label: g.overdue_now for g in report.current.directorates if g.overdue_now},
            target=report.target_percent,
            previous_received=before.received if before else None,
            previous_on_time=before.on_time if before else None,
        )


def sentences(h: Headline) -> list[str]:
    """Two or three plain sentences a panel member reads before any table: how many, how
    many answered within target, how many overdue and where."""
    if h.received == 0:
        if h.previous_received is None:
            return ["No enquiries were received in this period."]
        if h.previous_received == 0:
            return ["No enquiries were received in this period, nor in the previous one."]
        before = _plural(h.previous_received, "enquiry", "enquiries")
        return [f"No enquiries were received in this period ({before} in the previous one)."]
    return [_received_sentence(h), _on_time_sentence(h), _overdue_sentence(h)]


def _received_sentence(h: Headline) -> str:
    n = h.received
    said = f"{n:,} {'enquiry was' if n == 1 else 'enquiries were'} received"
    before = h.previous_received
    if before is None:
        return said + "."
    if before == 0:
        return said + ", and none in the previous period."
    change = math.floor(100 * abs(n - before) / before + 0.5)
    if change == 0:
        return said + f", about as many as in the previous period ({before:,})."
    more = "more" if n > before else "fewer"
    return said + f", {change}% {more} than in the previous period ({before:,})."


def _on_time_sentence(h: Headline) -> str:
    n, ratio = h.received, h.on_time
    if ratio.of == 0:
        if n == 1:
            return "It has not been answered yet, and its deadline has not passed."
        return "None has been answered yet or passed its deadline."
    if ratio.of == 1:
        subject = "It" if n == 1 else "The one answered or past its deadline"
        return f"{subject} was {'' if ratio.hit else 'not '}answered within target."
    pct = ratio.against(h.target)
    if ratio.of == n:
        said = f"{pct} were answered within target"
    else:
        said = f"Of the {ratio.of:,} answered or past their deadline, {pct}"
        said += " were answered within target"
    if h.target is not None:
        said += f", against a target of {h.target:g}%"
    if h.previous_on_time is not None and h.previous_on_time.of:
        said += f" ({h.previous_on_time.against(h.target)} in the previous period)"
    return said + "."


def _overdue_sentence(h: Headline) -> str:
    total = sum(h.overdue.values())
    if total == 0:
        return "It is not overdue." if h.received == 1 else "None is overdue now."
    said = "It is overdue now" if h.received == 1 else f"{total:,} {_be(total)} overdue now"
    if len(h.overdue) == 1:
        [(where, _n)] = h.overdue.items()
        return f"{said}, {'' if total == 1 else 'all '}{_in(where)}."
    top = max(h.overdue.values())
    leaders = sorted((d for d, n in h.overdue.items() if n == top), key=str.casefold)
    if len(leaders) > 1:
        return f"{said}, most {_join([_in(d) for d in leaders])} ({top:,} each)."
    most = "most of them" if 2 * top > total else "the most"
    return f"{said}, {most} {_in(leaders[0])} ({top:,})."


def _be(n: int) -> str:
    return "is" if n == 1 else "are"


def _in(directorate: str) -> str:
    return "with no directorate" if directorate == NO_DIRECTORATE else f"in {directorate}"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


# --- charts ---------------------------------------------------------------------------------


def charts(report: Report) -> list[Chart]:
    """On time slice by slice against the target, and where the enquiries came from."""
    period = report.current
    target = report.target_percent
    step = period.step
    first, last = period.timeline[0].start, period.timeline[-1].start
    span = f"from {_slice(first, step)} to {_slice(last, step)}"
    column = "Month" if step == "month" else "Week beginning"
    stacks = report_charts.stacks(period)
    volume_rows = [
        PanelRow(
            _slice_row(period, part),
            "slice",
            [*(Cell(f"{counts[i]:,}") for _name, counts in stacks), Cell(f"{part.total:,}")],
        )
        for i, part in enumerate(period.timeline)
    ]
    return [
        Chart(
            question=f"Are enquiries answered within target, {step} by {step}?",
            src=_data_uri(report_charts.on_time_png(period, target)),
            alt=f"Bar chart of the share of enquiries answered within target each {step} {span}"
            + ("" if target is None else f", with a dashed line at the {target:g}% target")
            + ".",
            summary=_on_time_summary(period, target),
            table=PanelTable(
                f"Answered within target, {step} by {step}",
                [column, "Answered within target", "Answered or past their deadline", "Share"],
                [
                    PanelRow(
                        _slice_row(period, part),
                        "slice",
                        [
                            Cell(f"{part.on_time.hit:,}"),
                            Cell(f"{part.on_time.of:,}"),
                            Cell(part.on_time.against(target)),
                        ],
                    )
                    for part in period.timeline
                ],
            ),
        ),
        Chart(
            question=f"Which directorates do the enquiries go to, {step} by {step}?",
            src=_data_uri(report_charts.volume_png(period)),
            alt=f"Stacked bar chart of the enquiries received each {step} {span}, "
            "one colour and pattern per directorate, the total above each bar.",
            summary=_volume_summary(period),
            table=PanelTable(
                f"Enquiries received per directorate, {step} by {step}",
                [column, *(name for name, _counts in stacks), "Total"],
                volume_rows,
            ),
        ),
    ]


def _slice(first: date, step: str) -> str:
    return report_charts.slice_label(first, step, with_year=True)


def _slice_row(period: PeriodReport, part: Slice) -> str:
    """A slice's name in a chart's table, with its days when the period has only part of it."""
    note = report_charts.part_note(period, part)
    name = _slice(part.start, period.step)
    return name if note is None else f"{name} {note}"


def _on_time_summary(period: PeriodReport, target: float | None) -> str:
    known = [p for p in period.timeline if p.on_time.of]
    if not known:
        return "No enquiry received in this period has been answered or passed its deadline yet."
    step = period.step
    best = max(known, key=lambda p: p.on_time.percent or 0.0)
    worst = min(known, key=lambda p: p.on_time.percent or 0.0)
    if best is worst:
        said = f"{_slice_row(period, best)}: {best.on_time.against(target)}."
    else:
        said = (
            f"Highest: {_slice_row(period, best)}, {best.on_time.against(target)}; "
            f"lowest: {_slice_row(period, worst)}, {worst.on_time.against(target)}."
        )
    if target is not None:
        met = sum(1 for p in known if (p.on_time.percent or 0.0) >= target)
        said += f" {met} of {_plural(len(known), step, step + 's')} reached the {target:g}% target."
    return said


def _volume_summary(period: PeriodReport) -> str:
    total = period.total.received
    if total == 0:
        return "No enquiries were received in this period."
    busiest = max(period.directorates, key=lambda g: g.received)
    said = (
        f"{busiest.label} received the most: {busiest.received:,} of {total:,} "
        f"({Ratio(busiest.received, total).percent_text})."
    )
    whole = [p for p in period.timeline if report_charts.part_note(period, p) is None]
    if len(whole) > 1:  # a part of a week or month is no quiet one
        step = period.step
        high = max(whole, key=lambda p: p.total)
        low = min(whole, key=lambda p: p.total)
        said += (
            f" The busiest {step} was {_slice(high.start, step)} ({high.total:,}); "
            f"the quietest {_slice(low.start, step)} ({low.total:,})."
        )
    return said


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --- tables ---------------------------------------------------------------------------------


def _section(report: Report, section: str, heading: str, *, folded: bool) -> Section:
    pairs = (
        report.paired("total") + report.paired("areas")
        if section == "areas"
        else report.paired(section)
    )
    compared = report.previous is not None
    what = "each directorate and service area" if section == "areas" else "each member"

    def table(caption: str, columns: tuple[str, ...]) -> PanelTable:
        return PanelTable(
            caption,
            ["Directorate and service area" if section == "areas" else "Member"]
            + [SHORT.get(c, c) for c in columns],
            [
                PanelRow(
                    (now.label if before is None else now.label or before.label),
                    now.level,
                    [_cell(BY_HEADING[c], now, before, compared) for c in columns],
                )
                for now, before in pairs
            ],
        )

    return Section(
        heading=heading,
        main=table(heading, MAIN_COLUMNS),
        details=[table(f"{heading}: {name.lower()}", columns) for name, columns in DETAIL_COLUMNS],
        toggle=f"More figures for {what}",
        printed=f"{'The' if folded else 'More'} figures for {what}: in the appendix.",
        folded=folded,
    )


def _cell(metric: Metric, now: GroupStats, before: GroupStats | None, compared: bool) -> Cell:
    value = metric.value(now)
    previous = None
    if compared:
        previous = "-" if before is None else _text(metric.value(before))
    if isinstance(value, Ratio):
        return Cell(value.percent_text, _counts(value) if value.of else None, previous)
    return Cell(_text(value), None, previous)


def _text(value: Any) -> str:
    return value.percent_text if isinstance(value, Ratio) else _number(value)


def write(report: Report, fmt: str, output: Path | None) -> str | None:
    """Write csv/xlsx/html to `output` (csv and html may go to stdout: returned instead)."""
    if fmt == "xlsx":
        assert output is not None
        write_xlsx(report, output)
        return None
    text = render_csv(report) if fmt == "csv" else render_html(report)
    if output is None:
        return text
    with private_open(output, "w", encoding="utf-8") as stream:
        stream.write(text)
    return None
