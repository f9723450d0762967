"""What an inbound email means: open a case, or quarantine it with a reason (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailbridge.config import ServiceArea
from mailbridge.directory import Identity
from mailbridge.parsing import ParsedEmail


@dataclass(frozen=True, slots=True)
class OpenCase:
    member_id: int
    submitter_id: int
    service_area: str | None
    directorate: str | None


@dataclass(frozen=True, slots=True)
class Quarantine:
    code: str
    reason: str


Decision = OpenCase | Quarantine


def decide(parsed: ParsedEmail, sender: Identity, areas: Sequence[ServiceArea]) -> Decision:
    """Issue #2's rules: members and their delegates open cases; anyone else waits in quarantine."""
    if not parsed.from_address:
        return Quarantine("no_sender", "the message has no readable From address")
    if sender.kind in ("member", "delegate") and sender.member_id and sender.person_id:
        area = guess_service_area(f"{parsed.subject}\n{parsed.body_text}", areas)
        return OpenCase(
            member_id=sender.member_id,
            submitter_id=sender.person_id,
            service_area=area.name if area else None,
            directorate=area.directorate if area else None,
        )
    if sender.kind in ("officer", "coordinator"):
        return Quarantine(
            "not_linked_to_case",
            f"{sender.kind} {parsed.from_address} wrote to the shared mailbox, "
            "but the message does not belong to a case; only members open cases",
        )
    return Quarantine(
        "unknown_sender",
        f"{parsed.from_address} is not a registered member, delegate, officer or coordinator",
    )


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(keyword.strip()) + r"\b", re.IGNORECASE)


def guess_service_area(text: str, areas: Sequence[ServiceArea]) -> ServiceArea | None:
    """The area whose keywords occur most often; ties go to the first in config order."""
    best: ServiceArea | None = None
    best_hits = 0
    for area in areas:
        hits = sum(len(_keyword_pattern(k).findall(text)) for k in area.keywords if k.strip())
        if hits > best_hits:
            best, best_hits = area, hits
    return best
