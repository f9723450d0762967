"""Delivery receipts: outbox rows the SMTP server accepted, kept on disk until marked sent.

SQLite lets one transaction write at a time, and ingest holds that lock for a whole batch
(a third of a second for 100 emails here). When the courier marked each email sent in a transaction
of its own, every mark waited for the batch to end: the courier spent most of a run
waiting and ingest then waited for it to drain (bench/ingest.py). So on SQLite the courier
appends each accepted outbox id to a file of its own and marks the ids in the transaction
that claims the next mail, or on their own once the oldest has waited two seconds (a
quarter of the lease at most).

A receipt is one write(2) to a file opened with O_APPEND: once the call returns it survives
the process being killed, as a commit at synchronous=NORMAL does, so a kill still repeats at
most the one email in flight. Before it claims mail, a courier marks every receipt in the
folder: its own, those of living couriers (read as they stand) and those of dead ones.
Each courier holds an exclusive flock on its file for as long as it lives; a file whose
lock can be taken belongs to a courier that died, and is removed once its ids are marked.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session

from mailbridge.files import private_folder
from mailbridge.store.db import transaction
from mailbridge.store.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

SUFFIX = ".receipts"
# A receipt waits at most this long before its row shows as sent (while the lock is free).
FOLD_SECONDS = 2.0

_MARK_SENT = (
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("row_id"))  # type: ignore[arg-type]
    .values(status=OutboxStatus.SENT, sent_at=bindparam("at"), last_error=None)
)


class Taken:
    """Receipts taken to be marked sent in a transaction of the caller's."""

    def __init__(self, rows: list[dict[str, object]]) -> None:
        self.rows = rows
        self.marked = False

    def mark(self, session: Session) -> None:
        if self.rows:
            session.connection().execute(_MARK_SENT, self.rows)
        self.marked = True


class Receipts:
    """One courier's receipts; marking them also marks other couriers' (see the module)."""

    def __init__(
        self,
        directory: Path,
        *,
        fold_seconds: float = FOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.fold_seconds = fold_seconds
        self.clock = clock
        self._fd: int | None = None
        self._path: Path | None = None
        self._pending: list[tuple[int, datetime]] = []
        self._oldest = 0.0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, row_id: int, at: datetime) -> None:
        """The server accepted this row's email: remember it before anything else happens."""
        fd = self._fd if self._fd is not None else self._open()
        os.write(fd, f"{row_id} {at.isoformat()}\n".encode())
        if not self._pending:
            self._oldest = self.clock()
        self._pending.append((row_id, at))

    def due(self) -> bool:
        """True once the oldest unmarked receipt has waited `fold_seconds`."""
        return bool(self._pending) and self.clock() - self._oldest >= self.fold_seconds

    def fold(self, engine: Engine) -> int:
        """Mark every receipt (ours and other couriers') sent in one transaction.

        Returns how many rows were marked; no transaction at all when there are none.
        """
        with self.taken() as taken:
            if taken.rows:
                with transaction(engine) as session:
                    taken.mark(session)
            else:
                taken.marked = True  # nothing to mark: a dead courier's empty file can go
            return len(taken.rows)

    @contextmanager
    def taken(self) -> Iterator[Taken]:
        """The receipts to mark in the caller's transaction, which must commit inside the
        block: files are emptied or removed only after it, so a crash in between marks the
        same rows again later, which changes nothing."""
        orphans, living = self._scan()
        rows = [
            {"row_id": row_id, "at": at}
            for row_id, at in [
                *self._pending,
                *(r for _, _, found in orphans for r in found),
                *living,
            ]
        ]
        taken = Taken(rows)
        try:
            yield taken
            if not taken.marked:
                return
            if self._pending and self._fd is not None:
                os.ftruncate(self._fd, 0)  # O_APPEND: the next receipt starts the file again
            self._pending = []
            for path, _fd, found in orphans:
                path.unlink(missing_ok=True)
                if found:
                    log.info(
                        "receipts of a stopped courier marked sent",
                        extra={"file": path.name, "rows": len(found)},
                    )
        finally:
            for _, fd, _ in orphans:
                os.close(fd)  # releases its lock

    def wait_seconds(self, idle: float) -> float:
        """How long the courier may sleep before its receipts are due to be marked."""
        if not self._pending:
            return idle
        return max(0.0, min(idle, self._oldest + self.fold_seconds - self.clock()))

    def close(self) -> None:
        """Leave: only an empty file is removed; one still holding receipts waits for a fold."""
        if self._fd is None:
            return
        if not self._pending and self._path is not None:
            self._path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    # -- files ------------------------------------------------------------------------

    def _open(self) -> int:
        """Create our file locked under a temporary name, then give it its visible name:
        no other courier can ever see it unlocked and take it for a dead one's."""
        private_folder(self.directory)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._path = self.directory / f"{name}{SUFFIX}"
        os.replace(tmp, self._path)
        self._fd = fd
        return fd

    def _scan(
        self,
    ) -> tuple[list[tuple[Path, int, list[tuple[int, datetime]]]], list[tuple[int, datetime]]]:
        """Other couriers' files: those of couriers that died, each opened and locked with
        its receipts; and the receipts of living ones, read as they stand.

        A living courier's receipts are marked too (never removed: that is its own job):
        one that lost its parent may take a while to mark them itself, and meanwhile the
        leases of its rows can run out, and they must not go a second time.
        """
        try:
            paths = list(self.directory.glob(f"*{SUFFIX}")) if self.directory.is_dir() else []
        except OSError as exc:  # unreadable: nothing to take over now, delivery goes on
            log.warning("cannot read the receipts folder", extra={"error": str(exc)})
            return [], []
        orphans = []
        living: list[tuple[int, datetime]] = []
        for path in paths:
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # another courier took it first
                continue
            with os.fdopen(os.dup(fd), "rb") as fh:
                found = parse(fh.read())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its courier is alive
                os.close(fd)
                living.extend(found)
                continue
            if not path.exists():  # taken and removed while we waited for the lock
                os.close(fd)
                continue
            os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(fd), "rb") as fh:
                orphans.append((path, fd, parse(fh.read())))  # all of it, now it is ours
        return orphans, living


def parse(data: bytes) -> list[tuple[int, datetime]]:
    """Receipts in a file; a line cut short by a kill (or anything else unreadable) is
    skipped: at worst that one email is sent again, with the same Message-ID."""
    out = []
    for line in data.decode("ascii", "replace").split("\n"):
        row_id, _, at = line.partition(" ")
        try:
            out.append((int(row_id), datetime.fromisoformat(at)))
        except ValueError:
            continue
    return out
