"""Where each IMAP source got to (UIDVALIDITY, last UID): in memory or in the database."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from mailbridge.store.db import transaction
from mailbridge.store.models import MailboxState, utcnow


class MemoryStateStore:
    """For tests and one-off runs: forgotten at exit, which only costs a full scan."""

    def __init__(self) -> None:
        self._marks: dict[str, tuple[int | None, int]] = {}
        self._lock = threading.Lock()

    def load(self, source_name: str) -> tuple[int | None, int]:
        with self._lock:
            return self._marks.get(source_name, (None, 0))

    def save(self, source_name: str, uidvalidity: int | None, last_uid: int) -> None:
        with self._lock:
            self._marks[source_name] = (uidvalidity, last_uid)


class DbStateStore:
    """The `mailbox_state` table, so a restarted daemon resumes from its last UID."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, source_name: str) -> tuple[int | None, int]:
        with transaction(self.engine) as session:
            row = session.get(MailboxState, source_name)
            return (None, 0) if row is None else (row.uidvalidity, row.last_uid)

    def save(self, source_name: str, uidvalidity: int | None, last_uid: int) -> None:
        # Two daemons may insert the first row at once: the loser retries as an update.
        for attempt in range(2):
            try:
                with transaction(self.engine) as session:
                    row = session.get(MailboxState, source_name)
                    if row is None:
                        row = MailboxState(source=source_name)
                    row.uidvalidity = uidvalidity
                    row.last_uid = last_uid
                    row.updated_at = utcnow()
                    session.add(row)
                return
            except IntegrityError:
                if attempt:
                    raise
