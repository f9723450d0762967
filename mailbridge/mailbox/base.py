"""The one small interface every mailbox source implements (transport only, no decisions)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import BinaryIO, Protocol, TypeVar

from mailbridge.probe import Probe


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
    # The whole message's size when it is larger than the source takes (max_message_bytes):
    # `raw` is then its header alone, and the rest was never fetched.
    oversize: int | None = None


RAMP_FROM = 10


def batch_sizes(waiting: int, batch_size: int) -> list[int]:
    """How many messages each batch of a backlog takes: a short first batch or two, so
    the pipeline fills quickly, then `batch_size`.

    The parse worker runs a batch ahead of the database work, so the first batch is dead
    time for the main process until it is parsed (~0.15 s for 100 here, bench/ingest.py);
    its acknowledgements leave sooner too. A batch is never more than `batch_size`; below
    10 there is nothing worth ramping.
    """
    sizes: list[int] = []
    ramp = [batch_size // 5, batch_size * 2 // 5] if batch_size >= RAMP_FROM else []
    left = waiting
    while left > 0:
        size = min(left, ramp.pop(0) if ramp else batch_size)
        sizes.append(size)
        left -= size
    return sizes


T = TypeVar("T")

# Limits a source is built with ([mailbox] max_message_bytes and max_batch_bytes).
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
MAX_BATCH_BYTES = 100 * 1024 * 1024
# Of a message over the size limit, at most this much header is read.
MAX_HEADER_BYTES = 1024 * 1024


def by_bytes(items: Sequence[T], size_of: Callable[[T], int], max_bytes: int) -> list[list[T]]:
    """Consecutive runs of `items` of at most `max_bytes` together: a batch's raw messages
    are all in memory at once (twice, with the parse worker's copy). An item larger than
    `max_bytes` goes alone."""
    runs: list[list[T]] = []
    total = 0
    for item in items:
        size = size_of(item)
        if not runs or total + size > max_bytes:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += size
    return runs


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def read_header(stream: BinaryIO, limit: int = MAX_HEADER_BYTES) -> bytes:
    """A message's header section (with the blank line after it), at most `limit` bytes,
    read without reading the body."""
    data = b""
    while len(data) < limit:
        chunk = stream.read(min(64 * 1024, limit - len(data)))
        if not chunk:
            break
        data += chunk
        end = _HEADER_END.search(data, max(0, len(data) - len(chunk) - 3))
        if end:
            return data[: end.end()]
    return data


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

    def move(self, keys: Sequence[str], destination: Destination) -> list[str]:
        """Move handled messages out of the inbox (folders created when missing); returns
        the keys no longer there to move. A shared mailbox has other clients (a person in
        Outlook, a second daemon) that move and delete mail too: that is not an error."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until new mail may have arrived or timeout; True if woken by the server."""
        ...

    def probe(self) -> Probe:
        """Connect and look (waiting mail, folders, what the server can do), changing
        nothing; TransportError says what to fix."""
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
