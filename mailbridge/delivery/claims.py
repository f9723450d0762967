"""Who holds the outbox's claims: each sender's proof that it is alive, and the takeover of
the rows claimed by a sender that died.

A claim leases rows for [smtp] lease_seconds so that no two senders send one email. Alone,
a lease cannot tell a slow sender from a dead one: a courier killed mid-batch left its rows
waiting the rest of the lease (five minutes by default). So every sender holds a lock named
for it while it claims (store/locks.py) and writes that name on the rows it claims; the
kernel or the database server lets go of the lock the moment the sender dies, and the next
claim by anyone sees that and makes the dead sender's rows due at once (`outbox.claim`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from mailbridge.store.locks import FileLock, ProcessLock, holder_of, lock_for, this_process
from mailbridge.store.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

# A sender seen alive is taken to be alive this long (seconds) before it is asked again:
# one look at the lock per second or two, not one per claim.
ALIVE_SECONDS = 2.0
NAME_MAX = 64  # outbox.claimed_by


def sender_name(process: str | None = None) -> str:
    """`sender:<host>:<pid>`, cut from the host's end if need be: the pid always fits."""
    host, _, pid = (process or this_process()).rpartition(":")
    tail = f":{pid}"
    return f"sender:{host}"[: NAME_MAX - len(tail)] + tail


class Claimer:
    """One sending process's name on the rows it claims, and its view of the others."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.name = name or sender_name()
        self.clock = clock
        self._lock: ProcessLock | None = None
        self._seen_alive: dict[str, float] = {}  # name -> when its lock was last seen held
        self._checked = 0.0  # when still_ours last asked our own lock

    def hold(self) -> str | None:
        """The name to write on the rows claimed now: ours while we hold our lock (taken at
        the first claim, and again after it was lost). None when another lock object of this
        process holds the name (two in one process): the rows then wait out their lease, as
        every row did before senders were named."""
        if self._lock is not None and self._lock.still_held():
            return self.name
        lock = lock_for(self.database_url, self.data_dir, self.name)
        if not lock.try_acquire():
            log.warning("sender lock held elsewhere in this process", extra={"lock": self.name})
            return None
        self._lock = lock
        return self.name

    def still_ours(self) -> bool:
        """Whether we still hold our lock, asked before each send (at most once every
        ALIVE_SECONDS): a sender whose lock ended (its database session cut) looks dead to
        the others, who take its rows; it must stop sending them at once."""
        if self._lock is None:
            return True  # no name on our rows: nobody takes them over
        if self.clock() - self._checked < ALIVE_SECONDS:
            return True
        self._checked = self.clock()
        if self._lock.still_held():
            return True
        self._lock = None
        return False

    def dead_senders(self, engine: Engine, now: datetime) -> list[str]:
        """Senders whose leases are running and who have died: asked before the claim's
        transaction, since each answer is I/O (a lock file, or pg_locks)."""
        with Session(engine) as session:
            names = session.exec(
                select(OutboxMessage.claimed_by)
                .where(
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.next_attempt_at > now,
                    col(OutboxMessage.claimed_by).is_not(None),
                    OutboxMessage.claimed_by != self.name,
                )
                .distinct()
            ).all()
        return [name for name in names if name is not None and not self._alive(name)]

    def _alive(self, name: str) -> bool:
        seen = self._seen_alive.get(name)
        if seen is not None and self.clock() - seen < ALIVE_SECONDS:
            return True
        if holder_of(self.database_url, self.data_dir, name) is None:
            self._seen_alive.pop(name, None)
            return False
        self._seen_alive[name] = self.clock()
        return True

    def release(self) -> None:
        """Let go of our name (a process that ends lets go of it anyway). On SQLite its lock
        file goes too: no other process takes this name, and a `schedule run-due` from cron
        would otherwise leave a file behind every few minutes."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        lock.release()
        if isinstance(lock, FileLock):
            lock.path.unlink(missing_ok=True)


def take_over(session: Session, dead: list[str], now: datetime) -> int:
    """In the claim's transaction: the rows of dead senders are due now. Their claim did not
    finish an attempt anyone knows of, so it no longer counts as one (the next claim counts
    it). Some may have reached the server already: sent again, they carry the same
    Message-ID, which the design accepts. On SQLite the caller has marked the receipts in
    the folder first, so what the dead courier noted as accepted is not among them."""
    taken = 0
    for name in dead:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.claimed_by == name,
                OutboxMessage.next_attempt_at > now,
            )
            .values(next_attempt_at=now, attempts=OutboxMessage.attempts - 1, claimed_by=None)
        )
        if result.rowcount:
            log.info(
                f"took over {result.rowcount} emails claimed by a sender that died",
                extra={"dead_sender": name, "emails": result.rowcount},
            )
            taken += result.rowcount
    return taken
