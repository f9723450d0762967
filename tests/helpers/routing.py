"""The people and cases of the routing table of the conversations issue, as the routing
code sees them (ids and facts, no database)."""

from __future__ import annotations

from dataclasses import replace

from mailbridge.cases.directory import Identity
from mailbridge.cases.facts import CaseFacts

OWN = frozenset({"enquiries@example.gov.uk"})
MEMBER, DELEGATE, LEAD, HELPER, COORDINATOR, OTHER_MEMBER, STRANGER_OFFICER = range(1, 8)

CASE = CaseFacts(
    id=42,
    reference="MQ-2026-00042",
    status="in_progress",
    member_id=MEMBER,
    submitter_id=MEMBER,
    lead_officer_id=LEAD,
    additional_officer_ids=frozenset({HELPER}),
)
COMPLETED_RECENTLY = replace(CASE, status="completed", working_days_since_completed=3)
COMPLETED_LONG_AGO = replace(CASE, status="completed", working_days_since_completed=9)

PEOPLE = {
    "member": Identity(MEMBER, "member", "Cllr Jane Smith", "jane@x", MEMBER),
    "delegate": Identity(DELEGATE, "delegate", "Sam Aide", "sam@x", MEMBER),
    "lead": Identity(LEAD, "officer", "Priya Shah", "priya@x", None),
    "helper": Identity(HELPER, "officer", "Tom Baker", "tom@x", None),
    "coordinator": Identity(COORDINATOR, "coordinator", "Member Support", "ms@x", None),
    "other member": Identity(OTHER_MEMBER, "member", "Cllr Raj Patel", "raj@x", OTHER_MEMBER),
    "other officer": Identity(STRANGER_OFFICER, "officer", "Ann Other", "ann@x", None),
    "stranger": Identity(None, None, None, "someone@x", None),
}
