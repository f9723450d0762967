"""Limits on how often something may happen, as one pure rule over counts.

Every limit mailbridge keeps is this rule: automatic mail per address, replies to strangers
per address and in total, new cases per sender. The counts come from rows in the database
(`auto_mail`, `case`), read in the caller's transaction, so a limit holds across a batch,
a restart and a second daemon alike (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Window:
    """At most `most` in any `span` of time ending now (0: none at all)."""

    span: timedelta
    most: int

    @property
    def named(self) -> str:
        return {HOUR: "in the last hour", DAY: "in the last 24 hours"}.get(
            self.span, f"in the last {self.span}"
        )


def per_hour_and_day(per_hour: int, per_day: int) -> tuple[Window, Window]:
    return Window(HOUR, per_hour), Window(DAY, per_day)


def reached(windows: Sequence[Window], counts: Sequence[int]) -> str | None:
    """The first window already holding as many as it allows, said in words; None when one
    more may happen. `counts[i]` is how many happened within `windows[i].span`."""
    for window, count in zip(windows, counts, strict=True):
        if count >= window.most:
            return f"{count} {window.named} (the limit is {window.most})"
    return None
