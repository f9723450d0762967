"""Parse workers: the same parses as in-process, in order, and a quiet fallback when broken.

Worker processes are real (forked); a broken pool is made by killing a worker with SIGKILL.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mailbridge.mail import parsing
from mailbridge.pipeline import parse as parse_module
from mailbridge.pipeline.parse import Limits, ParsePool, parse_or_none, workers_for
from mailbridge.store.blobs import BlobStore
from tests.factories import MAIL

LIMIT = Limits()  # the defaults ([storage] max_filename_length 120, [mailbox] limits)

EML = sorted(MAIL.glob("*.eml"))


def raws(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    p = ParsePool(2, LIMIT)
    p.start()
    try:
        yield p
    finally:
        p.close()


def worker_pids(pool: ParsePool) -> list[int]:
    assert pool._pool is not None
    return list(pool._pool._processes)  # type: ignore[attr-defined]


def test_the_fixture_corpus_is_there() -> None:
    assert len(EML) >= 10


def test_workers_parse_the_corpus_exactly_as_the_main_process(pool: ParsePool) -> None:
    batch = raws(EML)
    futures = pool.submit(batch)
    assert futures is not None and len(futures) == 2  # one slice per worker
    parsed = pool.result(futures)
    expected = [parse_or_none(raw, LIMIT) for raw in batch]
    assert parsed is not None and len(parsed) == len(batch)
    for path, got, want in zip(EML, parsed, expected, strict=True):
        assert got == want, path.name


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_order_is_kept_across_slices(pool: ParsePool, size: int) -> None:
    # The corpus reversed, cut to sizes that split unevenly (or not at all) over 2 workers.
    batch = raws(list(reversed(EML))[:size])
    parsed = pool.result(pool.submit(batch))
    assert parsed is not None
    assert [p.raw_sha256 if p else None for p in parsed] == [
        hashlib.sha256(raw).hexdigest() for raw in batch
    ]
    assert parsed == [parse_or_none(raw, LIMIT) for raw in batch]


def test_workers_store_the_raw_messages_before_the_parse_comes_back(tmp_path: Path) -> None:
    """The main process then finds each raw message committed, and writes it no more."""
    batch = raws(EML[:5])
    storing = ParsePool(2, LIMIT, tmp_path)
    storing.start()
    try:
        parsed = storing.result(storing.submit(batch))
    finally:
        storing.close()
    assert parsed is not None
    # Committed by the worker: another connection (another process) reads them already.
    with sqlite3.connect(tmp_path / "blobs" / "blobs.sqlite") as db:
        stored = {d: bytes(b) for d, b in db.execute("SELECT sha256, data FROM blob")}
    assert stored == {hashlib.sha256(raw).hexdigest(): raw for raw in batch}
    # Storing the same bytes again in the main process writes nothing new.
    store = BlobStore(tmp_path)
    with store.batch():
        for raw, one in zip(batch, parsed, strict=True):
            assert one is not None
            assert store.put(raw, sha256=one.raw_sha256) == one.raw_sha256
        assert store._pending == {}


def test_the_filename_limit_reaches_the_workers() -> None:
    path = MAIL / "attachment_very_long_filenames_rfc2231_continuations.eml"
    raw = path.read_bytes()
    short = ParsePool(1, Limits(max_filename_length=16))
    short.start()
    try:
        [parsed] = short.result(short.submit([raw])) or pytest.fail("no parse")
    finally:
        short.close()
    assert parsed == parse_or_none(raw, Limits(max_filename_length=16))
    assert parsed is not None and parsed != parse_or_none(raw, LIMIT)
    assert all(len(a.filename) <= 16 for a in parsed.attachments)


def test_no_workers_means_parse_in_the_main_process() -> None:
    none = ParsePool(0, LIMIT)
    none.start()  # nothing to start
    assert none._pool is None
    assert none.submit(raws(EML[:2])) is None
    assert ParsePool(0, LIMIT).result(None) is None
    none.close()


def test_a_closed_pool_submits_nothing(pool: ParsePool) -> None:
    pool.close()
    assert pool.submit(raws(EML[:1])) is None


def test_a_killed_worker_falls_back_to_none_without_raising(pool: ParsePool) -> None:
    assert pool.result(pool.submit(raws(EML[:2]))) is not None  # the pool works
    victim = worker_pids(pool)[0]
    os.kill(victim, signal.SIGKILL)
    # The worker is our child: it stays a zombie until the pool reaps it.
    deadline = time.monotonic() + 10
    while psutil.pid_exists(victim) and time.monotonic() < deadline:
        try:
            if psutil.Process(victim).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)

    # Until the pool notices the death, the surviving worker may still parse a batch (then
    # the parses are right); once it has, a batch comes back as None (parse here), the
    # next submit closes the pool, and nothing raises at any point.
    batch = raws(EML[:4])
    expected = [parse_or_none(raw, LIMIT) for raw in batch]
    deadline = time.monotonic() + 10
    while (futures := pool.submit(batch)) is not None:
        assert pool.result(futures) in (None, expected)
        assert time.monotonic() < deadline, "the pool never noticed its worker had died"
        time.sleep(0.05)
    assert pool._pool is None and pool.broken  # the daemon starts a new one next pass
    assert ParsePool(0, LIMIT).result(None) is None


def test_auto_uses_every_core_but_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, workers in [(None, 0), (1, 0), (2, 1), (3, 2), (4, 3), (6, 4), (64, 4)]:
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert workers_for("auto") == workers, cores


def test_a_number_of_workers_is_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert [workers_for(n) for n in (0, 1, 3, 8)] == [0, 1, 3, 8]


def _start_pool_and_vanish(pid_out: object) -> None:
    """Runs in a child: start a pool, report its workers, then die without closing it."""
    orphaned = ParsePool(2, LIMIT)
    orphaned.start()
    pid_out.send(worker_pids(orphaned))  # type: ignore[attr-defined]
    os._exit(0)  # as after SIGKILL: no shutdown, no atexit


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_workers_of_a_dead_daemon_exit_by_themselves() -> None:
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    daemon = ctx.Process(target=_start_pool_and_vanish, args=(send,))
    daemon.start()
    assert receive.poll(15), "the child did not report its workers"
    pids = receive.recv()
    daemon.join(15)
    assert daemon.exitcode == 0 and len(pids) == 2
    try:
        deadline = time.monotonic() + 15
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if not gone(pid)] == [], "orphaned parse workers stayed"
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def stall_in_c(raw: bytes, **_limits: object) -> object:
    """A parse stuck inside C code, where the timer signal cannot interrupt it (a regular
    expression that backtracks without end holds the interpreter)."""
    re.match(rb"(a+)+$", b"a" * 64 + b"!")
    raise AssertionError("never reached")


def test_a_worker_stuck_where_the_timer_cannot_reach_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past its slice's whole budget, the workers are killed and the pool marked broken
    (the daemon starts new ones at its next pass); the batch is parsed here instead."""
    monkeypatch.setattr(parsing, "parse", stall_in_c)  # before the fork: the worker has it
    monkeypatch.setattr(parse_module, "HARD_LIMIT_GRACE_SECONDS", 0.5)
    stuck = ParsePool(1, Limits(timeout_seconds=0.1))
    stuck.start()
    try:
        [worker] = worker_pids(stuck)
        assert stuck.result(stuck.submit(raws(EML[:1]))) is None
        assert stuck.broken and stuck._pool is None
        assert not psutil.pid_exists(worker) or gone(worker)
    finally:
        stuck.close()
