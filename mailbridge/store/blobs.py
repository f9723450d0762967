"""Content-addressed storage for raw messages and attachments (invariant 7).

The bytes live in one SQLite file, `data_dir/blobs/blobs.sqlite`, one row per sha256.
Creating a file per blob cost 0.15-0.6 ms of kernel CPU a blob on ext4 here (the file's
inode, its directory entry, the journal), more than parsing the email it held; a row in
SQLite's write-ahead log costs ~0.02 ms, and a whole batch becomes durable with one fsync.
SQLite (not the case database) because the parse workers write blobs while the main
process holds the case database's write lock, and because the bytes stay beside the
data directory on PostgreSQL deployments too.

Blobs written by earlier versions as files (`blobs/ab/<sha256>`, `blobs/ab/cd/<sha256>`)
are still read, in place.

Removal (erasure, mailbridge/privacy/erasure.py) and writing must not race: a parse worker
or a batch may write a blob, or find it already stored and skip it, for a message whose case
is not committed yet; a removal that checked the case database in between would delete bytes
that case is about to name. So `blobs/.use.lock` is an flock: writers hold it shared from
their first `put()` until the transaction that names the blob has committed (`keeping()`,
around the pipeline's batch, a coordinator's reply, an accepted quarantined message), and
`remove()` takes it exclusive while it asks which candidates are still named and deletes the
others. A writer that starts after a removal finds the blob gone and writes it again; a
removal that starts after a writer's commit sees the writer's reference. Only the digests an
erasure released are candidates: there is never a sweep of the whole store.

SQLite keeps the pages a removal frees on its free list and fills them with the next blobs
written, so the file stops growing rather than shrinking; `VACUUM` (while the service is
stopped) would hand the space back to the file system.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mailbridge.files import private_file, private_folder

FILE_NAME = "blobs.sqlite"
# Inside a batch, pending bytes are written out early once they pass this size, so a batch
# of large attachments never sits in memory whole.
FLUSH_BYTES = 32 * 1024 * 1024
BUSY_TIMEOUT_MS = 60_000  # another process's batch takes milliseconds; wait, never fail

# Connections a forked child inherited: never closed there (closing might checkpoint and
# remove the write-ahead log under the parent's feet), never used; kept so that garbage
# collection does not close them either.
_INHERITED: list[sqlite3.Connection] = []


class BlobStore:
    """Store bytes once under their sha256; `batch()` makes many durable with one fsync."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "blobs"
        self.file = self.root / FILE_NAME
        self._db: sqlite3.Connection | None = None
        self._pid = 0  # the process that opened _db
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] | None = None  # digest -> bytes, in a batch
        self._pending_size = 0
        self._held = threading.local()  # .depth: keeping() blocks this thread is in

    # -- writers and removal ----------------------------------------------------------

    @contextmanager
    def keeping(self) -> Iterator[None]:
        """Hold the store shared: no removal runs until the block ends. Wrap a writer's
        `put()`s *and* the commit of what names them (see the module docstring)."""
        depth = getattr(self._held, "depth", 0)
        if depth:  # this thread holds it already: the outermost block releases it
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with open(self._use_lock(), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remove(self, candidates: set[str], still_named: Callable[[set[str]], set[str]]) -> set[str]:
        """Delete the candidates that `still_named` (asked while no writer runs) does not
        return; return the digests deleted."""
        if getattr(self._held, "depth", 0):
            raise RuntimeError("a removal inside keeping() would wait for itself")
        if not candidates:
            return set()
        with open(self._use_lock(), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                gone = set(candidates) - still_named(set(candidates))
                self._delete(gone)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return gone

    def _use_lock(self) -> Path:
        private_folder(self.root)
        path = self.root / ".use.lock"
        private_file(path)
        return path

    def _delete(self, digests: set[str]) -> None:
        if not digests:
            return
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM blob WHERE sha256 = ?", [(d,) for d in digests])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            # The deleted bytes' pages, zeroed in the file by secure_delete, are still whole
            # in the write-ahead log until a checkpoint empties it.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for digest in digests:
            for path in self._file_paths(digest):
                path.unlink(missing_ok=True)

    # -- the database -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None and self._pid == os.getpid():
            return self._db
        if self._db is not None:  # opened before a fork: this process needs its own
            _INHERITED.append(self._db)
        private_folder(self.root)
        private_file(self.file)
        db = sqlite3.connect(
            self.file, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Two processes making a new store at once (two parse workers on a fresh data folder):
        # switching to WAL answers "database is locked" at once, without waiting, to the one
        # that comes second. One at a time, then.
        with open(self.root / ".setup.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA page_size = 16384")  # fewer overflow pages per blob
                db.execute("PRAGMA journal_mode = WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS blob (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL,"
                " data BLOB NOT NULL)"
            )
        # FULL: a committed blob is on disk before the case that names it is committed.
        db.execute("PRAGMA synchronous = FULL")
        # A removed blob is overwritten with zeros, not left in free pages (`scrub`).
        db.execute("PRAGMA secure_delete = ON")
        self._db, self._pid = db, os.getpid()
        return db

    def _write(self, items: dict[str, bytes]) -> None:
        if not items:
            return
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO blob (sha256, size, data) VALUES (?, ?, ?)",
                    [(digest, len(data), data) for digest, data in items.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                # SQLite has rolled back already after some errors (a full disk): a second
                # ROLLBACK would raise "no transaction is active" and hide the real cause.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _read(self, sha256: str) -> bytes | None:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT data FROM blob WHERE sha256 = ?", (sha256,))
                .fetchone()
            )
        return None if row is None else bytes(row[0])

    def _stored(self, sha256: str) -> bool:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT 1 FROM blob WHERE sha256 = ?", (sha256,))
                .fetchone()
            )
        return row is not None

    # -- blobs ------------------------------------------------------------------------

    def put(self, data: bytes, *, sha256: str | None = None) -> str:
        """Store bytes once; return their sha256. Safe to call again with the same bytes.

        `sha256`: the digest of exactly these bytes, when the caller computed it already.
        Outside a batch the bytes are durable when this returns; inside one, when it ends.
        """
        digest = sha256 or hashlib.sha256(data).hexdigest()
        if self._pending is None:
            with self.keeping():
                if not self.exists(digest):
                    self._write({digest: bytes(data)})
            return digest
        if self.exists(digest):
            return digest
        self._pending[digest] = bytes(data)
        self._pending_size += len(data)
        if self._pending_size > FLUSH_BYTES:
            self._flush()
        return digest

    def put_many(self, blobs: list[bytes]) -> list[str]:
        """Store several, durable together when this returns (one transaction, one fsync)."""
        with self.batch():
            return [self.put(data) for data in blobs]

    def _flush(self) -> None:
        if self._pending:
            self._write(self._pending)
        self._pending = {}
        self._pending_size = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write the block's blobs in one transaction when it ends; leave it before
        committing what refers to them.

        On an exception the batch's blobs are not written (any written early, past
        FLUSH_BYTES, stay: unreferenced bytes named by their content are harmless).
        """
        if self._pending is not None:  # already in a batch: the outer one writes
            yield
            return
        self._pending = {}
        self._pending_size = 0
        try:
            with self.keeping():
                yield
                self._flush()
        finally:
            self._pending = None
            self._pending_size = 0

    def get(self, sha256: str) -> bytes:
        if self._pending is not None and sha256 in self._pending:
            return self._pending[sha256]
        data = self._read(sha256)
        if data is not None:
            return data
        for path in self._file_paths(sha256):
            if path.is_file():
                return path.read_bytes()
        raise FileNotFoundError(f"blob {sha256} is not in {self.root}")

    def exists(self, sha256: str) -> bool:
        if self._pending is not None and sha256 in self._pending:
            return True
        return self._stored(sha256) or any(p.is_file() for p in self._file_paths(sha256))

    def _file_paths(self, sha256: str) -> tuple[Path, ...]:
        """Where earlier versions kept a blob as a file of its own."""
        if len(sha256) != 64 or not sha256.isalnum():
            return ()
        return (
            self.root / sha256[:2] / sha256,
            self.root / sha256[:2] / sha256[2:4] / sha256,
        )
