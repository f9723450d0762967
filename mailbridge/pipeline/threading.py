"""Which case an inbound email belongs to (pure): the threading rules, in their order.

1. its own Message-ID was stored before: a re-delivery (the `skip_handled` step);
2. a signed Message-ID of ours in In-Reply-To/References, or our signed reply address;
3. any stored Message-ID (ours or received) in In-Reply-To/References;
4. the `Ref: MQ-…` marker from the footer of our mail, quoted in the body;
5. a case tag in the subject, also when its brackets were lost.

`candidates` reads what the message offers; the caller looks the ids and references up in
the database; `choose` applies the order. Whether the sender may write into the case they
point at is routing's question, not this module's: a match is only a claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailbridge.cases.facts import CaseFacts
from mailbridge.mail import subjects, tokens
from mailbridge.mail.parsing import ParsedEmail


@dataclass(frozen=True, slots=True)
class Candidates:
    signed: tuple[str, ...] = ()  # references proven by our signature
    message_ids: tuple[str, ...] = ()  # In-Reply-To first, then References newest first
    marker: str | None = None  # the footer marker quoted in the body
    tagged: tuple[str, ...] = ()  # references in the subject

    @property
    def references(self) -> set[str]:
        """Every reference to look up in the database."""
        refs = set(self.signed) | set(self.tagged)
        if self.marker:
            refs.add(self.marker)
        return refs


@dataclass(frozen=True, slots=True)
class Match:
    case: CaseFacts | None
    how: str | None = None  # "signed", "message_id", "marker" or "subject"
    missing_reference: str | None = None  # a reference that names no case


def candidates(parsed: ParsedEmail, keys: Sequence[bytes], prefix: str) -> Candidates:
    """What the message offers; a signature counts when one of `keys` made it."""
    thread_ids = [i for i in (parsed.in_reply_to, *reversed(parsed.references)) if i]
    thread_ids = list(dict.fromkeys(thread_ids))
    signed: list[str] = []
    if keys:
        for message_id in thread_ids:
            reference = tokens.verify_message_id(message_id, keys)
            if reference:
                signed.append(reference)
        for address in (*parsed.to, *parsed.cc):
            reference = tokens.verify_reply_address(address, keys)
            if reference:
                signed.append(reference)
    return Candidates(
        signed=tuple(dict.fromkeys(signed)),
        message_ids=tuple(thread_ids),
        marker=subjects.find_body_marker(parsed.body_text, prefix),
        tagged=tuple(subjects.find_references(parsed.subject, prefix)),
    )


def choose(
    found: Candidates,
    cases_by_id: Mapping[int, CaseFacts],
    case_id_by_message_id: Mapping[str, int],
    cases_by_reference: Mapping[str, CaseFacts],
) -> Match:
    """The first rule that names an existing case wins; a named but missing case is noted."""
    for reference in found.signed:
        if reference in cases_by_reference:
            return Match(cases_by_reference[reference], "signed")
    for message_id in found.message_ids:
        case_id = case_id_by_message_id.get(message_id)
        if case_id is not None and case_id in cases_by_id:
            return Match(cases_by_id[case_id], "message_id")
    if found.marker and found.marker in cases_by_reference:
        return Match(cases_by_reference[found.marker], "marker")
    for reference in found.tagged:
        if reference in cases_by_reference:
            return Match(cases_by_reference[reference], "subject")
    missing = next((r for r in found.tagged if r not in cases_by_reference), None)
    if missing is None and found.marker and found.marker not in cases_by_reference:
        missing = found.marker
    return Match(None, missing_reference=missing)


def is_member_of(case: CaseFacts, member_id: int | None) -> bool:
    """The case's own member, or another member linked to it (`case link`, `case merge`)."""
    return member_id is not None and (
        member_id == case.member_id or member_id in case.other_member_ids
    )
