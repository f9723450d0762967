"""The decisions an inbound email can lead to: what routing chooses (pipeline/routing.py,
pure) and what cases/inbound.py and the pipeline's apply table carry out.

Each is a small frozen value naming the case facts it was decided on, so applying it reads
nothing routing did not see.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbridge.cases.facts import CaseFacts
from mailbridge.mail.hygiene import Bounce


@dataclass(frozen=True, slots=True)
class OpenCase:
    member_id: int
    submitter_id: int
    service_area: str | None
    directorate: str | None
    linked_case_id: int | None = None  # a follow-up on a case completed too long ago
    # The door it came in by (Case.channel): "email", or "web"/"api" (cases/submissions.py).
    channel: str = "email"
    area_given: bool = False  # the submitter chose the area (the form), not keyword routing
    preferred_contact: str | None = None  # the resident's choice, where the door asks it
    # Who the first event names when no person submitted it (an API token, `Actor.shown`).
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Quarantine:
    code: str
    reason: str
    case_id: int | None = None  # the case it points at, for a coordinator to check
    answer_stranger: bool = False  # one polite reply that the address is for councillors
    tell_too_large: bool = False  # tell a known sender their email was too large to take in


@dataclass(frozen=True, slots=True)
class StatusRequest:
    member_id: int
    requester_id: int


@dataclass(frozen=True, slots=True)
class Chase:
    case: CaseFacts


@dataclass(frozen=True, slots=True)
class Reopen:
    case: CaseFacts


@dataclass(frozen=True, slots=True)
class RecordSatisfaction:
    """The member's answer (1-5) to the satisfaction question: recorded, nothing reopened,
    nothing sent."""

    case: CaseFacts
    rating: int


@dataclass(frozen=True, slots=True)
class OfficerReply:
    """The lead officer's reply: a response (completes), a holding reply, or internal."""

    case: CaseFacts
    kind: str  # "response", "holding" or "internal"
    extend_days: int | None = None
    extend_reason: str | None = None
    malformed: tuple[str, ...] = ()  # keyword lines that could not be read


@dataclass(frozen=True, slots=True)
class Contribution:
    case: CaseFacts


@dataclass(frozen=True, slots=True)
class CoordinatorNote:
    case: CaseFacts
    to_member: bool


@dataclass(frozen=True, slots=True)
class NoteAutoReply:
    """An auto-reply or out-of-office on a case: logged there, nothing else happens."""

    case: CaseFacts
    kind: str
    officer_away: bool = False  # an assigned officer is away: coordinators should know


@dataclass(frozen=True, slots=True)
class NoteBounce:
    bounce: Bounce
    doubt: str | None = None  # why it is not believed: then it is logged and flags nobody


@dataclass(frozen=True, slots=True)
class HoldFlood:
    """A new case beyond its sender's limit (cases/floods.py): quarantined as `flood`, and
    coordinators told once a day per sender."""

    case: OpenCase
    reason: str


Decision = (
    OpenCase
    | Quarantine
    | StatusRequest
    | Chase
    | Reopen
    | RecordSatisfaction
    | OfficerReply
    | Contribution
    | CoordinatorNote
    | NoteAutoReply
    | NoteBounce
    | HoldFlood
)
