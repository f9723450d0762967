"""Locks a process holds for as long as it lives: the proof that it is alive.

Used for the mailbox lease (one active `mailbridge run` per mailbox, service/lease.py) and
for a courier's claims on the outbox (delivery/courier.py). The operating system or the
database server lets go of the lock the moment its holder dies, however it dies, so nobody
has to wait for a timeout to learn that it did:

- on PostgreSQL, a session advisory lock held on a connection of the lock's own; the
  server releases it when the connection ends (a killed process closes its socket; a
  machine that lost power is noticed by TCP keepalives within about 15 seconds);
- on SQLite, whose every process is on one machine, a POSIX record lock (fcntl) on a file
  in `data_dir/locks/`; the kernel releases it when the process ends.

Either kind names its holder (`host:pid`) for `mailbridge check` and the standby's log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import NullPool, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mailbridge.errors import one_line
from mailbridge.store.models import utcnow

log = logging.getLogger(__name__)

# The server side of a lock's connection: a peer silent this long (seconds) is probed, and
# given up on after this many unanswered probes this far apart: about 11 seconds in all.
KEEPALIVE = {"tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2, "tcp_keepalives_count": 3}
# Our side: a server that does not answer within this many seconds is gone, and the lock
# with it; never a minute's wait on a dead socket.
CLIENT_TIMEOUT_SECONDS = 5


def this_process() -> str:
    """How a holder is named: the machine and the process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Holder:
    name: str  # host:pid
    since: datetime | None  # naive UTC
    role: str = ""  # what the holder said it holds the lock for (e.g. "once")


class ProcessLock(Protocol):
    name: str

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this process now holds it."""
        ...

    def still_held(self) -> bool:
        """False when the lock was lost (the database connection ended, the file was
        removed): whoever held it must stop doing what the lock allowed, at once."""
        ...

    def release(self) -> None: ...


def lock_for(database_url: str, data_dir: Path, name: str, role: str = "") -> ProcessLock:
    """The lock called `name` among all processes on this database; `role`, one word that
    others reading the holder see (`holder_of`)."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return AdvisoryLock(database_url, name, role)
    return FileLock(data_dir, name, role)


def holder_of(database_url: str, data_dir: Path, name: str) -> Holder | None:
    """Who holds the lock called `name` now, or None: its holder died or let it go.

    Asked by another process (a courier about a dead one's claims, `mailbridge check`),
    never by the holder itself, which knows.
    """
    if make_url(database_url).get_backend_name() == "postgresql":
        return _advisory_holder(database_url, name)
    return _file_holder(data_dir, name)


# --- PostgreSQL: an advisory lock on a connection of its own ------------------------------


def advisory_key(name: str) -> int:
    """A lock's name as PostgreSQL's 64-bit advisory lock key."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _key_parts(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


# Sockets of the lock connections this process holds: a child forked from it closes its
# copies, so that the lock ends with this process and not with the last of its children.
_open_sockets: weakref.WeakSet[AdvisoryLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_open_sockets):
        lock.forget_in_child()


os.register_at_fork(after_in_child=_close_in_child)


def _connect(database_url: str, application_name: str) -> Any:
    """A DB-API connection of the lock's own, outside any pool (a pool would reset it, and
    log a traceback, when it is closed after the server went away)."""
    url = make_url(database_url)
    dialect = create_engine(url, poolclass=NullPool).dialect
    cargs, cparams = dialect.create_connect_args(url)
    cparams.update(
        application_name=application_name[:63],
        connect_timeout=CLIENT_TIMEOUT_SECONDS,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        tcp_user_timeout=CLIENT_TIMEOUT_SECONDS * 1000,
    )
    try:
        return dialect.connect(*cargs, **cparams)
    except dialect.loaded_dbapi.Error as exc:  # as the service's own engine would say it
        raise OperationalError("connect", {}, exc) from exc


class AdvisoryLock:
    def __init__(self, database_url: str, name: str, role: str = "") -> None:
        self.name = name
        self.role = role
        self.key = advisory_key(name)
        self._url = database_url
        self._conn: Any = None  # the DB-API connection that holds the lock
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return True
        since = utcnow().isoformat(timespec="seconds")
        conn = _connect(self._url, f"mailbridge {self.role or '-'} {since} {this_process()}")
        try:
            with conn.cursor() as cursor:
                for setting, value in KEEPALIVE.items():
                    cursor.execute(f"SET {setting} = {int(value)}")
                # A server set to end idle sessions would end the lock with them.
                for setting in ("idle_in_transaction_session_timeout", "idle_session_timeout"):
                    cursor.execute(
                        "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = %s",
                        (setting,),
                    )
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                (taken,) = cursor.fetchone()
            conn.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.close()
            raise OperationalError("SELECT pg_try_advisory_lock", {}, exc) from exc
        if not taken:
            conn.close()
            return False
        self._conn = conn
        self._fd = conn.fileno()
        _open_sockets.add(self)
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            self._conn.commit()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure of the connection loses the lock
            log.warning("lock connection lost", extra={"lock": self.name, "error": one_line(exc)})
            self._close()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):  # a dead connection has let go already
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._conn.commit()
        self._close()

    def _close(self) -> None:
        conn, self._conn, self._fd = self._conn, None, None
        _open_sockets.discard(self)
        with contextlib.suppress(Exception):
            conn.close()

    def forget_in_child(self) -> None:
        """In a forked child: close our copy of the socket, touching nothing else (the
        parent's connection goes on)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._conn = self._fd = None


# The lock session's application_name: role, since, then host:pid (a long host name is cut
# from its end by the server's 63 characters; the role and since survive it).
_HOLDER = re.compile(r"^mailbridge (\S+) (\S+) (\S+)$")


def _advisory_holder(database_url: str, name: str) -> Holder | None:
    high, low = _key_parts(advisory_key(name))
    engine = create_engine(
        database_url, poolclass=NullPool, connect_args={"connect_timeout": CLIENT_TIMEOUT_SECONDS}
    )
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT a.application_name, a.backend_start FROM pg_locks l "
                    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid = :high AND l.objid = :low "
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"high": high, "low": low},
            ).first()
    finally:
        engine.dispose()
    if row is None:
        return None
    found = _HOLDER.match(row[0] or "")
    if found is None:
        return Holder("another process", None)
    role, when, name = found.groups()
    try:
        since: datetime | None = datetime.fromisoformat(when)
    except ValueError:
        since = None
    return Holder(name, since, "" if role == "-" else role)


# --- SQLite: a record lock on a file in data_dir ------------------------------------------


def lock_path(data_dir: Path, name: str) -> Path:
    readable = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return data_dir / "locks" / f"{readable}-{digest}.lock"


# Paths this process holds a FileLock on: a POSIX lock is dropped when its process closes
# any descriptor of the file, so this process never opens them to ask.
_held_here: dict[Path, FileLock] = {}


class FileLock:
    def __init__(self, data_dir: Path, name: str, role: str = "") -> None:
        self.name = name
        self.role = role
        self.path = lock_path(data_dir, name)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        if self.path in _held_here:
            return False  # another lock object of this process holds it
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        since = utcnow().isoformat(timespec="seconds")
        record = json.dumps({"holder": this_process(), "since": since, "role": self.role}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError as exc:  # a full disk: the lock holds, only its holder's name is lost
            log.warning(
                "cannot write the lock's holder", extra={"lock": self.name, "error": str(exc)}
            )
        self._fd = fd
        _held_here[self.path] = self
        return True

    def still_held(self) -> bool:
        if self._fd is None:
            return False
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # removed or replaced: another process may lock the new file
            log.warning("lock file removed", extra={"lock": self.name, "path": str(self.path)})
            self.release()
        return same

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held_here.pop(self.path, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # lets go of the lock


def _file_holder(data_dir: Path, name: str) -> Holder | None:
    path = lock_path(data_dir, name)
    if path in _held_here:
        return Holder(this_process(), None)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        else:
            return None  # nobody holds it (closing the descriptor lets go again)
        record = os.pread(fd, 4096, 0)
    finally:
        os.close(fd)
    try:
        data = json.loads(record)
        since = datetime.fromisoformat(data["since"])
        return Holder(str(data["holder"]), since, str(data.get("role", "")))
    except (ValueError, KeyError, TypeError):
        return Holder("another process", None)
