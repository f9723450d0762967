"""The one small interface every mailbox source implements (transport only, no decisions)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Destination(StrEnum):
    """Where a handled message goes once its effect is committed."""

    PROCESSED = "processed"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class InboundMail:
    """Raw bytes as the server holds them, and when the server received them."""

    key: str  # IMAP UID (as text) or Maildir key: opaque to everyone but the source
    raw: bytes
    received_at: datetime | None  # naive UTC: IMAP INTERNALDATE or Maildir file time


class MailboxSource(Protocol):
    """A mailbox: list and fetch what waits in the inbox, then move what was handled.

    `fetch` yields batches so the caller can commit each message and then `move` the
    batch in one call (per-message MOVE is the first bottleneck on IMAP).
    """

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def fetch(self, full_scan: bool = False) -> Iterator[list[InboundMail]]:
        """Yield batches of waiting messages; a full scan ignores the last-UID mark."""
        ...

    def move(self, keys: Sequence[str], destination: Destination) -> None:
        """Move handled messages out of the inbox (folders created when missing)."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until new mail may have arrived or timeout; True if woken by the server."""
        ...


class StateStore(Protocol):
    """Where an IMAP source got to, kept outside the mailbox so a restart resumes there.

    The mark is only a shortcut: a full scan plus message dedupe is always correct, so a
    lost or stale mark costs time, never mail.
    """

    def load(self, source_name: str) -> tuple[int | None, int]:
        """(UIDVALIDITY, last handled UID); (None, 0) for a source never seen."""
        ...

    def save(self, source_name: str, uidvalidity: int | None, last_uid: int) -> None: ...
