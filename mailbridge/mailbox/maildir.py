"""Maildir source: the embedded default, laid out as Dovecot does (Maildir++ folders).

A message is one file; moving it is one rename, so a handled message leaves the inbox
atomically and keeps its exact bytes. Another process may move the same file first: that
is not an error.
"""

from __future__ import annotations

import logging
import mailbox
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailbridge.errors import TransportError
from mailbridge.mailbox.base import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Destination,
    InboundMail,
    batch_sizes,
    by_bytes,
    read_header,
)
from mailbridge.probe import Probe, plural

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_RENAME_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    path: Path
    mtime: float
    size: int


def maildir_drop(path: Path, raw: bytes, received_at: datetime | None = None) -> str:
    """Deliver raw bytes into the root's new/ (tmp/ then rename), returning the key.

    The file's mtime is the receipt time the source reports, so a caller replaying old mail
    (a test, an import) can say when it arrived.
    """
    box = mailbox.Maildir(path, factory=None, create=True)
    key = box.add(raw)
    if received_at is not None:
        stamp = received_at.timestamp()
        os.utime(path / "new" / key, (stamp, stamp))
    return key


class MaildirSource:
    """The root's new/ and cur/ are the inbox; `.Processed`, `.Quarantine` the folders."""

    def __init__(
        self,
        path: Path,
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
        batch_size: int = 200,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.path = Path(path)
        self.max_message_bytes = max_message_bytes
        self.max_batch_bytes = max_batch_bytes
        self.folders = {
            Destination.PROCESSED: processed_folder,
            Destination.QUARANTINE: quarantine_folder,
        }
        self.batch_size = batch_size
        self.name = f"maildir:{self.path}"
        self._box: mailbox.Maildir | None = None
        self._seen_new: set[str] = set()

    def open(self) -> None:
        self._maildir()

    def close(self) -> None:
        self._box = None

    def _maildir(self) -> mailbox.Maildir:
        if self._box is None:
            self._box = mailbox.Maildir(self.path, factory=None, create=True)
        return self._box

    def _entries(self) -> list[_Entry]:
        self._maildir()
        entries: list[_Entry] = []
        for sub in ("new", "cur"):
            with os.scandir(self.path / sub) as it:
                for item in it:
                    if item.name.startswith("."):
                        continue
                    try:
                        stat = item.stat()
                    except FileNotFoundError:  # moved away by another process meanwhile
                        continue
                    key = item.name.split(":", 1)[0]
                    entries.append(_Entry(key, Path(item.path), stat.st_mtime, stat.st_size))
        entries.sort(key=lambda e: (e.mtime, e.key))
        return entries

    def fetch(self, full_scan: bool = False) -> Iterator[list[InboundMail]]:
        """Every message waiting in the inbox, oldest first (a Maildir has no UID mark), in
        batches bounded by count and bytes; of a file over max_message_bytes only the header
        is read."""
        entries = self._entries()
        self._seen_new = {e.path.name for e in entries if e.path.parent.name == "new"}
        start = 0
        for size in batch_sizes(len(entries), self.batch_size):
            chunk, start = entries[start : start + size], start + size
            for run in by_bytes(chunk, self._cost, self.max_batch_bytes):
                batch = [mail for entry in run if (mail := self._read(entry)) is not None]
                if batch:
                    yield batch

    def _cost(self, entry: _Entry) -> int:
        return entry.size if entry.size <= self.max_message_bytes else 0

    def _read(self, entry: _Entry) -> InboundMail | None:
        """The message, also when a mail client renamed it within the inbox since the scan
        (new/ to cur/, a flag); None when it left the inbox."""
        for _ in range(_RENAME_ROUNDS):
            try:
                return self._read_file(entry)
            except FileNotFoundError:
                again = [e for e in self._entries() if e.key == entry.key]
                if not again:
                    break
                entry = again[0]
        log.info(
            "message gone before it was fetched", extra={"source": self.name, "key": entry.key}
        )
        return None

    def _read_file(self, entry: _Entry) -> InboundMail:
        received = datetime.fromtimestamp(int(entry.mtime), UTC).replace(tzinfo=None)
        if entry.size > self.max_message_bytes:
            with entry.path.open("rb") as stream:
                header = read_header(stream)
            return InboundMail(entry.key, header, received, oversize=entry.size)
        return InboundMail(entry.key, entry.path.read_bytes(), received)

    def move(self, keys: Sequence[str], destination: Destination) -> list[str]:
        """Rename each file into the folder's cur/ (created when missing); returns the keys
        no longer in the inbox (another process moved or deleted the file)."""
        box = self._maildir()
        folder = self.folders[destination]
        if folder not in box.list_folders():
            box.add_folder(folder)
        target = self.path / f".{folder}" / "cur"
        left = set(keys)
        # A file renamed under us may only have changed its name (a mail client marking it
        # seen moves it from new/ to cur/ with flags): it is looked for again by its key.
        for _ in range(_RENAME_ROUNDS):
            found = [entry for entry in self._entries() if entry.key in left]
            if not found:
                break
            for entry in found:
                name = entry.path.name
                if entry.path.parent.name == "new" and ":" not in name:
                    name += ":2,"  # a message in cur/ carries an info part
                try:
                    os.rename(entry.path, target / name)
                except FileNotFoundError:
                    continue
                left.discard(entry.key)
        return sorted(left)

    def probe(self) -> Probe:
        """Count what waits; creates nothing (the first run makes what is missing)."""
        if not self.path.exists():
            return Probe(
                f"{self.path} does not exist yet",
                (
                    "the first run creates it empty: check [mailbox] url if mail should "
                    "be there already",
                ),
            )
        if not self.path.is_dir():
            raise TransportError(f"{self.path} is not a folder: check [mailbox] url")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise TransportError(
                f"cannot write in {self.path}, and handled mail is moved out of it: "
                "give the user running mailbridge write access"
            )
        waiting = 0
        for sub in ("new", "cur"):
            try:
                waiting += sum(1 for n in os.listdir(self.path / sub) if not n.startswith("."))
            except FileNotFoundError:
                continue
        found = [f"{plural(waiting, 'message')} waiting"]
        missing = [f for f in self.folders.values() if not (self.path / f".{f}").is_dir()]
        if missing:
            found.append(f"{' and '.join(missing)} created at the first move")
        else:
            found.append(f"folders {' and '.join(self.folders.values())} present")
        return Probe("; ".join(found))

    def wait(self, timeout: float) -> bool:
        """Poll new/ until a file the last fetch did not see appears, or timeout."""
        new = self.path / "new"
        self._maildir()
        deadline = time.monotonic() + timeout
        while True:
            if any(not n.startswith(".") and n not in self._seen_new for n in os.listdir(new)):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(_POLL_SECONDS, remaining))
