"""Parsing raw bytes, in the main process or off it, one batch ahead of the database work.

Parsing MIME is the largest piece of CPU work per message and needs nothing but the bytes,
so worker processes parse batch N+1 (and write its raw messages to the blob store) while
the main process stores batch N. Anything that
goes wrong here only means the main process parses the batch itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from mailbridge.mail import parsing
from mailbridge.mail.parsing import ParsedEmail
from mailbridge.store.blobs import BlobStore

log = logging.getLogger(__name__)

Parsed = list[ParsedEmail | None]

# How often a parse worker checks that the process that started it is still there.
ORPHAN_CHECK_SECONDS = 1.0


def parse_raw(raw: bytes, max_filename_length: int) -> ParsedEmail:
    return parsing.parse(raw, max_filename_length=max_filename_length)


def parse_or_none(raw: bytes, max_filename_length: int) -> ParsedEmail | None:
    try:
        return parse_raw(raw, max_filename_length)
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


def _parse_all(raws: Sequence[bytes], max_filename_length: int, data_dir: Path | None) -> Parsed:
    """Parse the slice, and store its raw messages on the way: the main process, the busier
    one, then finds each blob already committed and only has to refer to it.
    A blob whose message is never committed is harmless: it is named by its content."""
    parsed = [parse_or_none(raw, max_filename_length) for raw in raws]
    if data_dir is not None:
        _store(data_dir).put_many(list(raws))
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
    def __init__(
        self, workers: int, max_filename_length: int, data_dir: Path | None = None
    ) -> None:
        self.workers = workers
        self.max_filename_length = max_filename_length
        self.data_dir = data_dir  # where the workers store raw messages; None: they do not
        self._pool: ProcessPoolExecutor | None = None
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

    def submit(self, raws: Sequence[bytes]) -> list[Future[Parsed]] | None:
        if self._pool is None:
            return None
        size = -(-len(raws) // self.workers)  # one slice per worker
        try:
            return [
                self._pool.submit(
                    _parse_all, raws[i : i + size], self.max_filename_length, self.data_dir
                )
                for i in range(0, len(raws), size)
            ]
        except RuntimeError as exc:  # the pool broke (a worker was killed): parse inline
            log.warning("parse workers unavailable", extra={"error": str(exc)})
            self.close()
            self.broken = True
            return None

    def result(self, futures: list[Future[Parsed]] | None) -> Parsed | None:
        """The batch's parses in order, or None to parse in the main process."""
        if futures is None:
            return None
        try:
            return [parsed for future in futures for parsed in future.result()]
        except Exception as exc:  # noqa: BLE001 - e.g. a worker died; the batch is not lost
            log.warning("parse worker failed; parsing here", extra={"error": str(exc)})
            if isinstance(exc, BrokenProcessPool):  # and the pool with it: start() anew
                self.close()
                self.broken = True
            return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
