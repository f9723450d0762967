"""The journey of one inbound email, as an ordered list of named steps: read STEPS first.

Each step fills in the work item (work.py) or returns a typed outcome (outcomes.py) that
ends the journey. Reorder or add steps in STEPS alone. Anything a step raises is caught by
the processor (processor.py): the message stays in the inbox, its traceback is kept, and
after the configured number of failures it is quarantined with the reason while the loop
goes on (docs/architecture.md, invariant 5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from sqlalchemy import bindparam
from sqlmodel import Session, select

from mailbridge.cases import directory, floods
from mailbridge.cases.decisions import OpenCase
from mailbridge.cases.facts import case_ids_for_message_ids, load_cases
from mailbridge.mail import authentication, hygiene, replies
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.mailbox.base import Destination
from mailbridge.pipeline import routing, threading
from mailbridge.pipeline.apply import apply
from mailbridge.pipeline.outcomes import AlreadyHandled, Outcome
from mailbridge.pipeline.parse import Limits, parse_raw
from mailbridge.pipeline.work import BatchFacts, Earlier, Work
from mailbridge.services import Services
from mailbridge.store.models import (
    Disposition,
    Message,
    QuarantineItem,
    QuarantineStatus,
    utcnow,
)

Step = Callable[[Work, Services], Outcome | None]


def store_raw(work: Work, services: Services) -> None:
    """Keep the exact bytes first, so any later failure can be retried from them; of a
    message over the size limit there is only its header, which is not kept."""
    known = work.parsed.raw_sha256 if work.parsed is not None else None  # parsed ahead
    if work.oversize is not None:
        work.raw_sha256 = known or hashlib.sha256(work.raw).hexdigest()
        return
    work.raw_sha256 = services.blobs.put(work.raw, sha256=known)


def parse(work: Work, services: Services) -> None:
    if work.parsed is None:  # the batch may have parsed it ahead
        work.parsed = parse_raw(work.raw, Limits.of(services.config), work.oversize)


def skip_handled(work: Work, services: Services) -> Outcome | None:
    """Nothing doubled: a message whose effect is already committed is only moved.

    The same message is the same Message-ID saying the same (its key), or the very same
    bytes; a second delivery differs only in the trace headers it gained. Another email
    that reuses a Message-ID is not a copy: it goes on, and where it lands says so
    (apply.reuse_note). A retried message is a copy of itself and goes on too."""
    email = work.email
    facts = work.facts if work.facts is not None else BatchFacts.load(work.session, [email])
    earlier = facts.earlier.get(email.message_id or "", [])
    if work.retry_of is None:
        disposition = facts.dispositions.get(work.dedupe_key)
        if disposition:
            return AlreadyHandled(work.dedupe_key, _destination(disposition))
        for seen in earlier:
            if seen.raw_sha256 == work.raw_sha256 or _says_the_same(seen, email, services):
                return AlreadyHandled(seen.dedupe_key, _destination(seen.disposition))
    message_id = email.message_id
    if message_id:
        first = facts.first_in_batch.setdefault(message_id, work.dedupe_key)
        if first != work.dedupe_key or any(s.raw_sha256 != work.raw_sha256 for s in earlier):
            work.reused_message_id = message_id
    return None


def _says_the_same(seen: Earlier, email: ParsedEmail, services: Services) -> bool:
    """For a message stored before its key held its content (the key was the bare
    Message-ID): its stored copy, read again, says the same."""
    if seen.dedupe_key != email.message_id or not seen.raw_sha256:
        return False
    if not services.blobs.exists(seen.raw_sha256):
        return False  # the stored copy is gone: nothing to compare, so not taken for a copy
    before = parse_raw(services.blobs.get(seen.raw_sha256), Limits.of(services.config))
    return before.content_sha256 == email.content_sha256


def classify(work: Work, services: Services) -> None:
    """Loops, bounces and auto-replies are recognised before anything else is decided."""
    work.verdict = hygiene.classify(work.email, services.own_addresses)


def identify_sender(work: Work, services: Services) -> None:
    address = work.email.from_address
    if work.facts is None:
        work.sender = directory.identify(work.session, address)
        return
    # Ingest changes nobody's addresses: a batch asks once per sender, not per message.
    known = work.facts.senders
    key = address or ""
    if key not in known:
        known[key] = directory.identify(work.session, address)
    work.sender = known[key]


def authenticate(work: Work, services: Services) -> None:
    """Who sent it, proven: what the council's gateway wrote about the From domain
    (mail/authentication.py); routing judges it by the sender's role."""
    if work.vouched:
        work.auth = authentication.VOUCHED
        return
    trust = services.config.trust
    gateway = authentication.Gateway(
        frozenset(i.lower() for i in trust.authserv_ids),
        trust.microsoft365,
        tuple(s.lower().rstrip(".") for s in trust.microsoft365_auth_sources),
    )
    work.auth = authentication.evidence(work.email, gateway)


def find_case(work: Work, services: Services) -> None:
    """The case the message points at, by the threading rules (threading.py), if any."""
    cfg = services.config
    found = threading.candidates(work.email, services.verifying_keys, cfg.cases.reference_prefix)
    if not (found.message_ids or found.references):
        work.match = threading.Match(None)
        return
    by_message_id = case_ids_for_message_ids(work.session, found.message_ids)
    today = services.calendar.local_date(utcnow())
    facts = load_cases(
        work.session,
        ids=by_message_id.values(),
        references=found.references,
        calendar=services.calendar,
        today=today,
    )
    match = threading.choose(
        found,
        {f.id: f for f in facts},
        by_message_id,
        {f.reference: f for f in facts},
    )
    # Mail on a case merged into another belongs to the case it was merged into.
    for _ in range(5):
        if match.case is None or match.case.merged_into_id is None:
            break
        merged = load_cases(
            work.session, ids=[match.case.merged_into_id], calendar=services.calendar, today=today
        )
        if not merged:
            break
        match = threading.Match(merged[0], match.how)
    work.match = match


def read_reply(work: Work, services: Services) -> None:
    """A reply's new text (no quoted history or signature) and the keywords in it."""
    assert work.match is not None  # find_case ran
    parsed = work.email
    if work.match.case is None or work.verdict is not None:
        # Keywords only mean something on a case; a fresh email's first line is its own.
        work.status_request = replies.asks_for_status(parsed.subject, parsed.body_text)
        return
    work.reply_text = replies.extract_reply(parsed.body_text)
    work.keywords = replies.find_keywords(work.reply_text)
    work.status_request = replies.asks_for_status(parsed.subject, work.reply_text)


def route(work: Work, services: Services) -> None:
    assert work.sender is not None and work.match is not None  # identify_sender, find_case
    trust = services.config.trust
    own_domain = services.config.smtp.from_address.rsplit("@", 1)[1].lower()
    work.decision = routing.decide(
        work.email,
        work.sender,
        work.verdict,
        work.match,
        work.keywords,
        work.status_request,
        routing.Policy(
            areas=services.config.service_areas,
            reopen_working_days=services.config.cases.reopen_working_days,
            satisfaction=services.config.satisfaction.ask,
            trust=routing.Trust(
                trust.requirements(),
                tuple(d.lower() for d in trust.report_domains) or (own_domain,),
                checks_senders=bool(trust.authserv_ids) or trust.microsoft365,
            ),
        ),
        rating=replies.rating_of(work.reply_text) if work.reply_text else None,
        auth=work.auth,
    )


def limit_new_cases(work: Work, services: Services) -> None:
    """However its From was forged, one person's mail opens only so many cases (floods.py);
    a message a coordinator accepted is past the limit's question."""
    if isinstance(work.decision, OpenCase) and not work.vouched:
        sender = work.email.from_address or ""
        limits = services.config.limits
        work.decision = floods.limit(work.session, limits, work.decision, work.received_at, sender)


STEPS: Sequence[Step] = (
    store_raw,
    parse,
    skip_handled,
    classify,
    identify_sender,
    authenticate,
    find_case,
    read_reply,
    route,
    limit_new_cases,
    apply,
)


# Built once: constructing a statement costs more than running it, once per message.
_DISPOSITION = select(Message.disposition).where(Message.dedupe_key == bindparam("key"))
_WAITING = select(QuarantineItem.id).where(
    QuarantineItem.dedupe_key == bindparam("key"),
    QuarantineItem.status == QuarantineStatus.WAITING,
)


def already_handled(session: Session, key: str) -> AlreadyHandled | None:
    """The message's effect was committed before (or it waits in quarantine): only move it."""
    conn = session.connection()
    disposition = conn.execute(_DISPOSITION, {"key": key}).scalar()
    if disposition is None:
        if conn.execute(_WAITING, {"key": key}).first() is None:
            return None
        disposition = Disposition.QUARANTINED
    return AlreadyHandled(key, _destination(disposition))


def _destination(disposition: str) -> Destination:
    if disposition == Disposition.QUARANTINED:
        return Destination.QUARANTINE
    return Destination.PROCESSED
