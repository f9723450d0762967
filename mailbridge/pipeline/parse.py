"""Parsing raw bytes, in the main process or off it, one batch ahead of the database work.

Parsing MIME is the largest piece of CPU work per message and needs nothing but the bytes,
so worker processes parse batch N+1 (and write its raw messages to the blob store) while
the main process stores batch N. Anything that
goes wrong here only means the main process parses the batch itself.

Every parse is bounded (`Limits`, from `[mailbox]`): so many MIME parts and levels, and so
much time, after which the message is read by its header alone and quarantined as
too_complex. The time limit is a timer signal in the thread that parses (a worker's, or the
main process's), which interrupts Python code; a worker stuck where it cannot (inside C
code) is killed when its slice of the batch overruns its whole budget, and replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mailbridge.config import Config
from mailbridge.mail import parsing
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.store.blobs import BlobStore

log = logging.getLogger(__name__)

Parsed = list[ParsedEmail | None]

# How often a parse worker checks that the process that started it is still there.
ORPHAN_CHECK_SECONDS = 1.0


RAISE_AGAIN_SECONDS = 0.1
# The packages a parse runs in (mail/parsing.py and what it calls), where the time limit's
# exception may be raised.
PARSE_MODULES = frozenset(
    {"mailbridge", "email", "mailparser", "html2text", "re", "encodings", "codecs", "base64",
     "quopri", "mimetypes", "binascii", "unicodedata", "hashlib", "io"}
)  # fmt: skip
# A worker whose slice overruns its parse time limits by this much is taken to be stuck
# where the timer cannot reach it.
HARD_LIMIT_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of one message is read, from `[mailbox]` and `[storage]`."""

    max_filename_length: int = 120
    max_parts: int = parsing.MAX_PARTS
    max_depth: int = parsing.MAX_DEPTH
    timeout_seconds: float = 30.0
    max_message_bytes: int = 40 * 1024 * 1024

    @classmethod
    def of(cls, config: Config) -> Limits:
        box = config.mailbox
        return cls(
            config.storage.max_filename_length,
            box.max_parts,
            box.max_depth,
            box.parse_timeout_seconds,
            box.max_message_bytes,
        )


class _OutOfTime(BaseException):
    """Raised by the timer into a parse; not an Exception, so no `except Exception` in the
    parsing code takes it for a defect of the message and reads on."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (a real-time timer; main thread only, where
    signals are delivered: elsewhere the block runs unbounded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, frame: FrameType | None) -> None:
        # Only into the parse's own code: the collector may be running someone else's
        # weakref callback or __del__ (SQLAlchemy's, say), which would lose the exception
        # and be left half done. The timer fires again RAISE_AGAIN_SECONDS later.
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if module.split(".", 1)[0] in PARSE_MODULES:
            raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, RAISE_AGAIN_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def parse_raw(raw: bytes, limits: Limits, oversize: int | None = None) -> ParsedEmail:
    """`oversize`: the message's whole size when `raw` is only its header (it was larger
    than max_message_bytes, so the mailbox source never fetched the rest)."""
    if oversize is not None:
        return parsing.parse_header(
            raw,
            too_large=f"{megabytes(oversize)}, more than the {megabytes(limits.max_message_bytes)}"
            " mailbridge takes ([mailbox] max_message_bytes)",
        )
    try:
        with _time_limit(limits.timeout_seconds):
            return parsing.parse(
                raw,
                max_filename_length=limits.max_filename_length,
                max_parts=limits.max_parts,
                max_depth=limits.max_depth,
            )
    except _OutOfTime:
        return parsing.parse_header(
            raw,
            too_complex=f"reading it took longer than {limits.timeout_seconds:g} s "
            "([mailbox] parse_timeout_seconds)",
        )


def parse_or_none(raw: bytes, limits: Limits, oversize: int | None = None) -> ParsedEmail | None:
    try:
        return parse_raw(raw, limits, oversize)
    except Exception:  # noqa: BLE001 - recorded when the parse step runs again
        return None


def workers_for(setting: int | str) -> int:
    """ "auto": one per core but one (at most 4).

    Measured on 2 cores (bench/ingest.py): one worker beside the main process and the
    courier raises throughput by a sixth, now that the courier no longer waits on every
    batch's transaction; on one core it would only compete.
    """
    if setting == "auto":
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    return int(setting)


def _parse_all(
    raws: Sequence[bytes],
    oversizes: Sequence[int | None],
    limits: Limits,
    data_dir: Path | None,
) -> Parsed:
    """Parse the slice, and store its raw messages on the way: the main process, the busier
    one, then finds each blob already committed and only has to refer to it.
    A blob whose message is never committed is harmless: it is named by its content.
    A message over the size limit (only its header here) is not stored."""
    parsed = [parse_or_none(raw, limits, size) for raw, size in zip(raws, oversizes, strict=True)]
    if data_dir is not None:
        _store(data_dir).put_many(
            [raw for raw, size in zip(raws, oversizes, strict=True) if size is None]
        )
    return parsed


_STORES: dict[Path, BlobStore] = {}


def _store(data_dir: Path) -> BlobStore:
    """One store (one database connection) per worker process, kept between batches."""
    store = _STORES.get(data_dir)
    if store is None:
        store = _STORES[data_dir] = BlobStore(data_dir)
    return store


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: leave once the daemon is gone (e.g. killed with SIGKILL).

    An idle worker waits on its task pipe, whose write end it holds itself after the
    fork, so without this it would wait for ever, orphaned.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(ORPHAN_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parse-orphan-check", daemon=True).start()


class ParsePool:
    def __init__(self, workers: int, limits: Limits, data_dir: Path | None = None) -> None:
        self.workers = workers
        self.limits = limits
        self.data_dir = data_dir  # where the workers store raw messages; None: they do not
        self._pool: ProcessPoolExecutor | None = None
        self._slices: dict[Future[Parsed], int] = {}  # messages in each slice submitted
        self.broken = False  # a worker died and the pool was closed: start() makes a new one

    def start(self) -> None:
        """Fork the workers now, while no database or mailbox connection is open."""
        if self.workers <= 0 or self._pool is not None:
            return
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        self._pool.submit(int).result()  # with fork, every worker starts on first use
        self.broken = False

    def submit(
        self, raws: Sequence[bytes], oversizes: Sequence[int | None] | None = None
    ) -> list[Future[Parsed]] | None:
        """`oversizes`: for each message, its whole size if `raws` holds only its header."""
        if self._pool is None:
            return None
        sizes = list(oversizes) if oversizes is not None else [None] * len(raws)
        size = -(-len(raws) // self.workers)  # one slice per worker
        try:
            futures = []
            for i in range(0, len(raws), size):
                chunk = raws[i : i + size]
                future = self._pool.submit(
                    _parse_all, chunk, sizes[i : i + size], self.limits, self.data_dir
                )
                self._slices[future] = len(chunk)
                futures.append(future)
            return futures
        except RuntimeError as exc:  # the pool broke (a worker was killed): parse inline
            log.warning("parse workers unavailable", extra={"error": str(exc)})
            self.close()
            self.broken = True
            return None

    def result(self, futures: list[Future[Parsed]] | None) -> Parsed | None:
        """The batch's parses in order, or None to parse in the main process."""
        if futures is None:
            return None
        slices = [self._slices.pop(future, 1) for future in futures]
        try:
            return [
                parsed
                for future, messages in zip(futures, slices, strict=True)
                for parsed in self._wait(future, messages)
            ]
        except FutureTimeout:
            log.error("parse worker stuck; replacing the workers and parsing here")
            self.kill()
            return None
        except Exception as exc:  # noqa: BLE001 - e.g. a worker died; the batch is not lost
            log.warning("parse worker failed; parsing here", extra={"error": str(exc)})
            if isinstance(exc, BrokenProcessPool):  # and the pool with it: start() anew
                self.close()
                self.broken = True
            return None

    def _wait(self, future: Future[Parsed], messages: int) -> Parsed:
        """A slice's parses. Each message is bounded by the timer, so a slice that overruns
        all its messages' limits together holds a worker stuck where the timer cannot reach."""
        budget = self.limits.timeout_seconds * messages + HARD_LIMIT_GRACE_SECONDS
        return future.result(timeout=budget)

    def kill(self) -> None:
        """End stuck workers at once; the daemon starts new ones at its next pass."""
        if self._pool is not None:
            for process in list(self._pool._processes.values()):  # type: ignore[attr-defined]
                process.kill()
        self.close()
        self.broken = True

    def close(self) -> None:
        self._slices.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
