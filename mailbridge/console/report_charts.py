"""The scrutiny report's two charts, as PNG: each answers one question.

* Are enquiries answered within target, slice by slice, against the target line?
* Where do the enquiries come from, slice by slice? Stacked bars per directorate, never a
  line each (five crossing lines answer nothing).

Colours are the Okabe-Ito palette, which people with any common colour-vision deficiency tell
apart, with a hatching per directorate too so a grey print still does. Matplotlib is imported
here only when a chart is drawn: a bare Figure renders with Agg and touches no pyplot state.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from mailbridge.console.reports import PeriodReport, Slice, next_slice

# Okabe & Ito (2008), strongest first; black last, for the "Other" stack.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#5F5F5F"
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo", "---")
INK = "#0B0C0C"
BAR = PALETTE[0]
WIDTH, HEIGHT, DPI = 8.0, 3.4, 150  # inches: the text width of A4 with 15 mm margins


def slice_label(first: date, step: str, *, with_year: bool) -> str:
    """'Mar' or 'Mar 2026' for a month, '2 Mar' or '2 Mar 2026' for a week."""
    text = f"{first:%b}" if step == "month" else f"{first.day} {first:%b}"
    return f"{text} {first.year}" if with_year else text


def part_note(period: PeriodReport, part: Slice) -> str | None:
    """'(3 days)' for a slice the period covers only in part, so a short bar is not read as
    a quiet week or month; None for a whole one."""
    days = period.days_in(part)
    if days == (next_slice(part.start, period.step) - part.start).days:
        return None
    return f"({days} day{'' if days == 1 else 's'})"


def tick_labels(period: PeriodReport) -> list[str]:
    """Slice labels, with the year under the first and under each January, and the days
    under a slice the period covers only in part."""
    labels = []
    year = None
    for part in period.timeline:
        first = part.start
        label = slice_label(first, period.step, with_year=False)
        if first.year != year:
            label += f"\n{first.year}"
        note = part_note(period, part)
        labels.append(label if note is None else f"{label}\n{note}")
        year = first.year
    return labels


def stacks(period: PeriodReport, most: int = len(PALETTE)) -> list[tuple[str, list[int]]]:
    """Per directorate, biggest first, its cases in each slice; beyond `most` directorates
    the smallest share one "Other directorates" stack so the colours stay distinct."""
    totals: dict[str | None, int] = {}
    for part in period.timeline:
        for directorate, n in part.received.items():
            totals[directorate] = totals.get(directorate, 0) + n
    order = sorted(totals, key=lambda d: (-totals[d], d is None, d or ""))
    shown = order if len(order) <= most else order[: most - 1]
    rest = [d for d in order if d not in shown]
    found = [
        (d or "(no directorate)", [p.received.get(d, 0) for p in period.timeline]) for d in shown
    ]
    if rest:
        found.append(
            (
                "Other directorates",
                [sum(p.received.get(d, 0) for d in rest) for p in period.timeline],
            )
        )
    return found


def on_time_png(period: PeriodReport, target: float | None) -> bytes:
    """% answered within target per slice, as bars, with the target as a dashed line."""
    fig = _figure()
    ax = fig.add_subplot()
    positions = range(len(period.timeline))
    values = [p.on_time.percent for p in period.timeline]
    bars = ax.bar(
        [i for i, v in zip(positions, values, strict=True) if v is not None],
        [v for v in values if v is not None],
        width=0.7,
        color=BAR,
    )
    known = [p for p in period.timeline if p.on_time.of]
    for bar, part in zip(bars, known, strict=True):
        height = bar.get_height()
        inside = height >= 15
        ax.annotate(
            part.on_time.against(target),
            (bar.get_x() + bar.get_width() / 2, height),
            xytext=(0, -4 if inside else 3),
            textcoords="offset points",
            ha="center",
            va="top" if inside else "bottom",
            color="white" if inside else INK,
            fontsize=8,
            fontweight="bold",
        )
    for i, value in zip(positions, values, strict=True):
        if value is None:
            ax.annotate("none due", (i, 1), ha="center", va="bottom", fontsize=7, color=INK)
    if target is not None:
        ax.axhline(target, color=INK, linestyle=(0, (6, 3)), linewidth=1.4)
        ax.annotate(
            f"Target {target:g}%",
            (1, target),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color=INK,
            backgroundcolor="white",
        )
    ax.set_ylim(0, 105)
    ax.set_yticks(range(0, 101, 20), [f"{v}%" for v in range(0, 101, 20)])
    ax.set_ylabel("Answered within target")
    _slices_axis(ax, period)
    return _png(fig)


def volume_png(period: PeriodReport) -> bytes:
    """Cases received per slice, stacked by directorate, the slice's total on top."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    positions = list(range(len(period.timeline)))
    bottom = [0] * len(positions)
    found = stacks(period)
    for k, (name, counts) in enumerate(found):
        other = name == "Other directorates"
        ax.bar(
            positions,
            counts,
            width=0.7,
            bottom=bottom,
            label=name,
            color=OTHER_COLOUR if other else PALETTE[k],
            hatch="" if other else HATCHES[k],
            edgecolor="white",
            linewidth=0.6,
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    top = max(bottom, default=0)
    for i, total in enumerate(bottom):
        ax.annotate(
            f"{total:,}",
            (i, total),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7.5,
            color=INK,
        )
    ax.set_ylim(0, max(top * 1.12, 1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("Enquiries received")
    _slices_axis(ax, period)
    if found:
        # Below the axes, in stacking order read left to right, so no bar is hidden.
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2 if period.step == "month" else -0.22),
            ncols=min(4, len(found)),
            fontsize=7.5,
            frameon=False,
        )
    return _png(fig)


def _slices_axis(ax: Any, period: PeriodReport) -> None:
    ax.set_xticks(range(len(period.timeline)), tick_labels(period), fontsize=7.5)
    ax.set_xlim(-0.6, len(period.timeline) - 0.4)
    ax.tick_params(axis="y", labelsize=7.5)
    ax.yaxis.label.set_size(8)
    ax.grid(axis="y", color="#B1B4B6", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _figure() -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
