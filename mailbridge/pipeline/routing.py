"""What an inbound email means (pure): who wrote, on which case, saying what.

The table of the conversations issue, in code. Every input is data gathered before:
the hygiene verdict, the sender's identity, the case the message points at, the reply's
keywords. The output is one Decision (cases/decisions.py) that the pipeline's apply step carries out
in the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailbridge.cases import lifecycle
from mailbridge.cases.areas import guess_service_area
from mailbridge.cases.decisions import (
    Chase,
    Contribution,
    CoordinatorNote,
    Decision,
    NoteAutoReply,
    NoteBounce,
    OfficerReply,
    OpenCase,
    Quarantine,
    RecordSatisfaction,
    Reopen,
    StatusRequest,
)
from mailbridge.cases.directory import Identity
from mailbridge.cases.facts import CaseFacts
from mailbridge.config import Requirement, ServiceArea
from mailbridge.mail import authentication
from mailbridge.mail.authentication import Evidence
from mailbridge.mail.hygiene import AutoReply, Bounce, Loop, Verdict
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.mail.replies import Keywords
from mailbridge.pipeline.threading import Match, is_member_of
from mailbridge.store.models import CaseStatus, PersonKind


@dataclass(frozen=True, slots=True)
class Trust:
    """`[trust]`: what each kind of sender must prove (mail/authentication.py)."""

    require: Mapping[str, Requirement] = field(default_factory=dict)  # by kind; else "none"
    # Whose delivery reports are believed; None only in tables that test other rules.
    report_domains: Sequence[str] | None = None
    checks_senders: bool = False  # a gateway is configured: strangers are answered if aligned


@dataclass(frozen=True, slots=True)
class Policy:
    """The configured parts of the rules."""

    areas: Sequence[ServiceArea] = ()
    reopen_working_days: int = 5
    satisfaction: bool = False  # [satisfaction].ask: a bare rating on a completed case counts
    trust: Trust = Trust()


# --- the rules ------------------------------------------------------------------------


def decide(
    parsed: ParsedEmail,
    sender: Identity,
    verdict: Verdict | None,
    match: Match,
    keywords: Keywords,
    status_request: bool,
    policy: Policy,
    rating: int | None = None,
    auth: Evidence = authentication.UNPROVEN,
) -> Decision:
    """`rating`: the reply's new text is only a rating (replies.rating_of), else None.
    `auth`: what the council's gateway proved of the From domain."""
    if isinstance(verdict, Loop):
        return Quarantine("loop", verdict.reason)
    if parsed.too_complex:
        return Quarantine(
            "too_complex", f"the message is more than mailbridge reads: {parsed.too_complex}"
        )
    if parsed.too_large:
        # Only its header was read. A person in the directory is told, so the attachments
        # can come again in smaller emails; nobody else, and never an automatic message.
        return Quarantine(
            "too_large",
            f"the message is larger than mailbridge takes: {parsed.too_large}",
            tell_too_large=(
                verdict is None and sender.person_id is not None and not parsed.sender_problem
            ),
        )
    if parsed.sender_problem:
        # Whom would a role be granted to? Mail servers and DMARC see one mailbox, people
        # may see another: nothing is decided on such a From.
        return Quarantine(
            "sender_ambiguous",
            f"the sender cannot be told: {parsed.sender_problem}",
            case_id=match.case.id if match.case else None,
        )
    if isinstance(verdict, Bounce):
        return NoteBounce(verdict, doubt=_report_doubt(parsed, auth, policy.trust))
    unproven = _unproven(parsed, sender, auth, policy.trust)
    if unproven:
        # Before anything a role allows: it opens nothing and changes nothing.
        return Quarantine(
            "sender_unauthenticated", unproven, case_id=match.case.id if match.case else None
        )
    if isinstance(verdict, AutoReply):
        case = match.case if match.case and _is_party(sender, match.case) else None
        if case is None:
            # Kept where a coordinator sees it, and never answered.
            return Quarantine(
                verdict.kind,
                f"an automatic message ({verdict.reason}) that belongs to no case; "
                "nothing was sent in reply",
                case_id=match.case.id if match.case else None,
            )
        away = (
            verdict.kind == "out_of_office"
            and sender.person_id is not None
            and sender.person_id in _officers(case)
        )
        return NoteAutoReply(case, verdict.kind, officer_away=away)
    if not parsed.from_address:
        return Quarantine("no_sender", "the message has no readable From address")

    case = match.case
    if case is None and match.missing_reference:
        return Quarantine(
            "unknown_reference",
            f"the message refers to {match.missing_reference}, and there is no such case",
        )
    is_member = sender.kind in (PersonKind.MEMBER, PersonKind.DELEGATE) and bool(
        sender.member_id and sender.person_id
    )
    if is_member and status_request:
        assert sender.member_id is not None and sender.person_id is not None
        return StatusRequest(sender.member_id, sender.person_id)
    if case is None:
        if is_member:
            return _open_case(parsed, sender, policy)
        if sender.kind in (PersonKind.OFFICER, PersonKind.COORDINATOR):
            return Quarantine(
                "not_linked_to_case",
                f"{sender.kind} {parsed.from_address} wrote to the shared mailbox, but the "
                "message does not belong to a case; only members open cases",
            )
        return Quarantine(
            "unknown_sender",
            f"{parsed.from_address} is not a registered member, delegate, officer or coordinator",
            # With a gateway to ask, a From nobody proved gets no reply: it may be forged.
            answer_stranger=not policy.trust.checks_senders or auth.meets("aligned"),
        )
    return _on_case(parsed, sender, case, keywords, policy, is_member, rating)


def _on_case(
    parsed: ParsedEmail,
    sender: Identity,
    case: CaseFacts,
    keywords: Keywords,
    policy: Policy,
    is_member: bool,
    rating: int | None = None,
) -> Decision:
    if case.status == CaseStatus.CLOSED and _is_party(sender, case):
        what = case.converted_to.replace("_", " ") if case.converted_to else "closed"
        return Quarantine(
            "case_closed",
            f"{parsed.from_address} wrote on {case.reference}, which was closed here "
            f"({what}); a coordinator should pass it on",
            case_id=case.id,
        )
    if is_member and is_member_of(case, sender.member_id):
        if case.status != CaseStatus.COMPLETED:
            return Chase(case)
        if policy.satisfaction and rating is not None:
            # However long ago it was completed: an answer is never a new enquiry.
            return RecordSatisfaction(case, rating)
        if lifecycle.reopens(case.working_days_since_completed, policy.reopen_working_days):
            return Reopen(case)
        decision = _open_case(parsed, sender, policy)
        assert isinstance(decision, OpenCase)
        return OpenCase(
            decision.member_id,
            decision.submitter_id,
            decision.service_area,
            decision.directorate,
            linked_case_id=case.id,
        )
    person = sender.person_id
    if person is not None and person == case.lead_officer_id:
        bad = keywords.malformed
        if keywords.internal:
            return OfficerReply(case, "internal", malformed=bad)
        # An extension means the answer is not final: `#extend N why` alone is a holding
        # reply too, and so is an `#extend` that could not be read (the officer is told).
        if keywords.holding or keywords.extending:
            return OfficerReply(
                case, "holding", keywords.extend_days, keywords.extend_reason, malformed=bad
            )
        return OfficerReply(case, "response", malformed=bad)
    if person is not None and person in case.additional_officer_ids:
        return Contribution(case)
    if sender.kind == PersonKind.COORDINATOR:
        return CoordinatorNote(case, to_member=keywords.member)
    who = f"{sender.kind} {parsed.from_address}" if sender.kind else parsed.from_address
    return Quarantine(
        "not_party_to_case",
        f"{who} wrote on {case.reference} but is not its member, delegate, officer or a "
        "coordinator; a coordinator can accept it after checking",
        case_id=case.id,
    )


_ASKS = {
    "dmarc": "DMARC pass for the From domain (or Microsoft 365 internal authentication)",
    "aligned": "DKIM or SPF aligned with the From domain",
}


def _unproven(parsed: ParsedEmail, sender: Identity, auth: Evidence, trust: Trust) -> str | None:
    """Why the sender's role cannot be granted on this evidence, or None."""
    if sender.kind is None:
        return None
    require = trust.require.get(sender.kind, "none")
    if auth.meets(require):
        return None
    return (
        f"{sender.kind} {parsed.from_address} not proven: the {sender.kind} policy asks for "
        f"{_ASKS[require]}; {auth.seen}"
    )


def _report_doubt(parsed: ParsedEmail, auth: Evidence, trust: Trust) -> str | None:
    """Why a delivery report is not believed (it flags nobody), or None."""
    if trust.report_domains is not None:
        doubt = authentication.report_doubt(parsed, trust.report_domains)
        if doubt:
            return doubt
    require = trust.require.get("delivery_report", "none")
    if auth.meets(require):
        return None
    return f"the delivery report policy asks for {_ASKS[require]}; {auth.seen}"


def _officers(case: CaseFacts) -> set[int]:
    officers = set(case.additional_officer_ids)
    if case.lead_officer_id is not None:
        officers.add(case.lead_officer_id)
    return officers


def _is_party(sender: Identity, case: CaseFacts) -> bool:
    if sender.person_id is None:
        return False
    return (
        is_member_of(case, sender.member_id)
        or sender.person_id in _officers(case)
        or sender.kind == PersonKind.COORDINATOR
    )


def _open_case(parsed: ParsedEmail, sender: Identity, policy: Policy) -> Decision:
    assert sender.member_id is not None and sender.person_id is not None
    area = guess_service_area(f"{parsed.subject}\n{parsed.body_text}", policy.areas)
    return OpenCase(
        member_id=sender.member_id,
        submitter_id=sender.person_id,
        service_area=area.name if area else None,
        directorate=area.directorate if area else None,
    )
