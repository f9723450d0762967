"""The work item one email carries through the steps, and what the database already knows
of its batch (read once for the whole batch)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, select

from mailbridge.cases.decisions import Decision
from mailbridge.cases.directory import Identity
from mailbridge.mail.hygiene import Verdict
from mailbridge.mail.parsing import ParsedEmail, previous_key
from mailbridge.mail.replies import Keywords
from mailbridge.pipeline.threading import Match
from mailbridge.store.models import (
    Direction,
    Disposition,
    Message,
    ProcessingFailure,
    QuarantineItem,
    QuarantineStatus,
    as_utc,
    utcnow,
)


@dataclass
class Work:
    """One email on its way through the steps: each step fills in its part, in the order of
    `steps.STEPS`, so a step may rely on what the steps before it filled in."""

    raw: bytes
    server_received_at: datetime | None
    session: Session
    retry_of: int | None = None
    raw_sha256: str = ""
    parsed: ParsedEmail | None = None
    sender: Identity | None = None
    verdict: Verdict | None = None
    match: Match | None = None
    reply_text: str | None = None
    keywords: Keywords = field(default_factory=Keywords)  # none until read_reply finds some
    status_request: bool = False
    decision: Decision | None = None
    facts: BatchFacts | None = None  # read once for the whole batch; None: ask per message
    # The Message-ID, when an earlier message with other content used it: noted on the case
    # or in the quarantine reason.
    reused_message_id: str | None = None

    @property
    def email(self) -> ParsedEmail:
        """The parsed email: every step after `parse` relies on it being there."""
        if self.parsed is None:
            raise RuntimeError("a step that reads the email ran before the parse step")
        return self.parsed

    @property
    def dedupe_key(self) -> str:
        if self.parsed is not None:
            return self.parsed.dedupe_key
        return "sha256:" + (self.raw_sha256 or hashlib.sha256(self.raw).hexdigest())

    @property
    def received_at(self) -> datetime:
        """Server time first (INTERNALDATE, then the first Received header), client Date last."""
        p = self.parsed
        for moment in (self.server_received_at, p and p.received_at, p and p.date):
            if moment:
                return as_utc(moment)
        return utcnow()


@dataclass(frozen=True, slots=True)
class Earlier:
    """An inbound message stored before with the same Message-ID."""

    dedupe_key: str
    raw_sha256: str | None
    disposition: str


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What the database already knows of a batch's messages, read with one query each.

    Per message these lookups cost more than the rest of the bookkeeping together.
    """

    dispositions: dict[str, str]  # dedupe key -> where a committed or quarantined copy went
    # Dedupe keys with a failure waiting to be retried (under the key, or under the key it
    # had before keys held the content).
    failing: frozenset[str]
    senders: dict[str, Identity] = field(default_factory=dict)  # filled as the batch goes
    # Message-ID -> the inbound messages stored with it, oldest first: a second delivery
    # of one of them, or another email that reuses its Message-ID.
    earlier: dict[str, list[Earlier]] = field(default_factory=dict)
    # Message-ID -> the dedupe key of the first message of this batch that used it.
    first_in_batch: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, parsed: Sequence[ParsedEmail]) -> BatchFacts:
        wanted = sorted({p.dedupe_key for p in parsed})
        previous = {old: p.dedupe_key for p in parsed if (old := previous_key(p.dedupe_key))}
        dispositions: dict[str, str] = {}
        failing: set[str] = set()
        conn = session.connection()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for key in conn.execute(_WAITING_IN, {"keys": chunk}).scalars():
                dispositions[key] = Disposition.QUARANTINED
            for key, disposition in conn.execute(_DISPOSITIONS_IN, {"keys": chunk}):
                dispositions[key] = disposition
            failing.update(conn.execute(_FAILING_IN, {"keys": chunk}).scalars())
        olds = sorted(previous)
        for start in range(0, len(olds), 500):
            found = conn.execute(_FAILING_IN, {"keys": olds[start : start + 500]}).scalars()
            failing.update(previous[old] for old in found)
        ids = sorted({p.message_id for p in parsed if p.message_id})
        earlier: dict[str, list[Earlier]] = {}
        for start in range(0, len(ids), 500):
            rows = conn.execute(_EARLIER_IN, {"ids": ids[start : start + 500]})
            for message_id, key, raw_sha256, disposition in rows:
                earlier.setdefault(message_id, []).append(Earlier(key, raw_sha256, disposition))
        return cls(dispositions, frozenset(failing), earlier=earlier)


_DISPOSITIONS_IN = select(Message.dedupe_key, Message.disposition).where(
    Message.dedupe_key.in_(bindparam("keys", expanding=True))  # type: ignore[union-attr]
)
_EARLIER_IN = (
    select(Message.message_id, Message.dedupe_key, Message.raw_sha256, Message.disposition)
    .where(
        Message.message_id.in_(bindparam("ids", expanding=True)),  # type: ignore[union-attr]
        Message.direction == Direction.IN,
    )
    .order_by(Message.id)  # type: ignore[arg-type]
)
_WAITING_IN = select(QuarantineItem.dedupe_key).where(
    QuarantineItem.dedupe_key.in_(bindparam("keys", expanding=True)),  # type: ignore[attr-defined]
    QuarantineItem.status == QuarantineStatus.WAITING,
)
_FAILING_IN = select(ProcessingFailure.dedupe_key).where(
    ProcessingFailure.dedupe_key.in_(bindparam("keys", expanding=True))  # type: ignore[attr-defined]
)
