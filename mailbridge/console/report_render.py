"""The scrutiny report as a Rich table, CSV, XLSX or a self-contained HTML page.

Everything here only lays out a `reports.Report`; the figures are computed in reports.py.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from mailbridge.console.reports import GroupStats, PeriodReport, Ratio, Report
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
# HTML with charts

CSS = """
body{font-family:Arial,Helvetica,sans-serif;color:#1b1b1b;margin:2em;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #b1b4b6;padding:.3em .5em;text-align:right;vertical-align:top}
th{background:#f3f2f1}td.group{text-align:left;font-weight:bold}
td.area{text-align:left;padding-left:1.5em}.prev{color:#505a5f;font-size:.9em}
p.notes{font-size:.85em;color:#505a5f}img{max-width:100%;margin:.5em 0}
"""


def render_html(report: Report) -> str:
    title = f"Member enquiries: {period_text(report.current)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Cases received {escape(period_text(report.current))}"
        + (f", compared with {escape(period_text(report.previous))}" if report.previous else "")
        + f". Figures as at {report.today:%d %b %Y} ({escape(report.timezone)}).</p>",
    ]
    for section, heading in (("total", "All cases"), *SECTIONS):
        parts.append(f"<h2>{escape(heading)}</h2>")
        parts.append(_html_table(report, section))
    parts.append("<h2>Charts</h2>")
    parts.append(_img(weekly_volume_png(report), "Cases received per week by directorate"))
    parts.append(_img(on_time_png(report), "Responded within target by directorate"))
    parts.append('<p class="notes">' + "<br>".join(escape(n) for n in NOTES) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(report: Report, section: str) -> str:
    rows = ["<table><thead><tr><th>Group</th>"]
    rows += [f"<th>{escape(m.heading)}</th>" for m in METRICS]
    rows.append("</tr></thead><tbody>")
    for now, before in report.paired(section):
        css = "area" if now.level == "service_area" else "group"
        rows.append(f'<tr><td class="{css}">{escape(now.label)}</td>')
        for metric in METRICS:
            cell = escape(show(metric.value(now)))
            if report.previous is not None:
                prev = show(metric.value(before)) if before else "-"
                cell += f'<br><span class="prev">{escape(prev)}</span>'
            rows.append(f"<td>{cell}</td>")
        rows.append("</tr>")
    rows.append("</tbody></table>")
    if report.previous is not None:
        rows.append(f'<p class="prev">Grey figures: {escape(period_text(report.previous))}</p>')
    return "".join(rows)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    # A bare Figure renders with Agg and touches no global pyplot state or GUI backend.
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def weekly_volume_png(report: Report) -> bytes:
    """Cases received per week, one line per directorate (weeks start on Monday)."""
    period = report.current
    weeks = period.weeks()
    fig = _figure(10, 4.5)
    ax = fig.add_subplot()
    for directorate, counts in sorted(
        period.weekly.items(), key=lambda kv: (kv[0] is None, kv[0] or "")
    ):
        ax.plot(
            weeks,
            [counts.get(w, 0) for w in weeks],
            marker="o",
            label=directorate or "(no directorate)",
        )
    ax.set_title(f"Cases received per week, {period_text(period)}")
    ax.set_ylabel("Cases")
    ax.set_xlabel("Week beginning")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if period.weekly:
        ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return _png(fig)


def on_time_png(report: Report) -> bytes:
    """% responded within the original target per directorate (and the previous period)."""
    labels = [g.label for g in report.current.directorates]
    current = [_pct(g.on_time) for g in report.current.directorates]
    series = [(period_text(report.current), current)]
    if report.previous is not None:
        before = {g.key: g for g in report.previous.directorates}
        series.append(
            (
                period_text(report.previous),
                [
                    _pct(before[g.key].on_time) if g.key in before else 0.0
                    for g in report.current.directorates
                ],
            )
        )
    fig = _figure(10, max(2.5, 0.6 * len(labels) * len(series) + 1.5))
    ax = fig.add_subplot()
    height = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        positions = [n + i * height for n in range(len(labels))]
        bars = ax.barh(positions, values, height=height, label=name)
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], padding=3, fontsize="small")
    ax.set_yticks([n + height * (len(series) - 1) / 2 for n in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("% responded within the original target")
    ax.set_title("Responded within target by directorate")
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _png(fig)


def _pct(ratio: Ratio) -> float:
    return ratio.percent or 0.0


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
