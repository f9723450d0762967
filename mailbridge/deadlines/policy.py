"""Deadline policy: which service level applies to a case, and the dates it gives.

Pure functions over the config and the working-day calendar, so the case path, `calendar
recompute`, pause/resume and reassignment all count deadlines the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from mailbridge.config import Config, EscalationStep, SlaRule
from mailbridge.deadlines.calendar import WorkingCalendar

# The longest extension an officer or coordinator may give at once, by email (`#extend N`),
# in the browser or with `case extend`: a year of working days.
EXTEND_MOST_DAYS = 260


@dataclass(frozen=True, slots=True)
class Sla:
    """The service level of one case."""

    acknowledge_days: int
    response_days: int
    reminders: tuple[int, ...]  # working days before the deadline, largest first
    escalation: tuple[EscalationStep, ...]  # by after_working_days, smallest first


@dataclass(frozen=True, slots=True)
class Deadlines:
    acknowledge_due: date
    response_due: date


def _rule_rank(rule: SlaRule, service_area: str | None, enquiry_type: str | None) -> int:
    """How specifically a rule fits a case: 3 area and type, 2 area, 1 type, 0 not at all."""

    def same(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and a.casefold() == b.casefold()

    if rule.service_area and not same(rule.service_area, service_area):
        return 0
    if rule.enquiry_type and not same(rule.enquiry_type, enquiry_type):
        return 0
    return 2 * bool(rule.service_area) + bool(rule.enquiry_type)


def sla_for(config: Config, service_area: str | None, enquiry_type: str | None) -> Sla:
    """The defaults, overridden key by key by the matching rules, the most specific last
    (area and type over area alone over type alone; among equals the later rule wins)."""
    sla = config.sla
    ack, resp, reminders = (
        sla.acknowledge_working_days,
        sla.response_working_days,
        sla.reminder_working_days_before,
    )
    ranked = sorted(
        (r for r in sla.rules if _rule_rank(r, service_area, enquiry_type)),
        key=lambda r: _rule_rank(r, service_area, enquiry_type),
    )
    for rule in ranked:
        if rule.acknowledge_working_days is not None:
            ack = rule.acknowledge_working_days
        if rule.response_working_days is not None:
            resp = rule.response_working_days
        if rule.reminder_working_days_before is not None:
            reminders = rule.reminder_working_days_before
    return Sla(
        acknowledge_days=ack,
        response_days=resp,
        reminders=tuple(sorted(set(reminders), reverse=True)),
        escalation=tuple(sorted(sla.escalation, key=lambda s: s.after_working_days)),
    )


def deadlines(
    calendar: WorkingCalendar, received_at: datetime, sla: Sla, paused_working_days: int = 0
) -> Deadlines:
    """Deadlines counted from the day the email counts as received (after the cut-off or on
    a closed day: the next working day), which is itself not counted; time the case spent
    paused moves the response deadline on by as many working days."""
    day = calendar.received_day(received_at)
    return Deadlines(
        acknowledge_due=calendar.add_working_days(day, sla.acknowledge_days),
        response_due=calendar.add_working_days(day, sla.response_days + paused_working_days),
    )
