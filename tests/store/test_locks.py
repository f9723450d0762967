"""The locks that prove a process alive (store/locks.py), on SQLite's lock file and on
PostgreSQL's advisory lock: held while the holder lives, named for others, let go the
moment it dies however it dies, and never kept alive by a child it forked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from mailbridge.store.locks import holder_of, lock_for, lock_path

NAME = "mailbox:imap://enquiries@mail.example.gov.uk:993/INBOX"


def hold_in_child(url: str, data_dir: Path, *, fork: bool = False) -> subprocess.Popen[str]:
    """A process that takes the lock, says so, and sleeps; with `fork`, it first forks a
    child that outlives it (as a courier or parse worker would, for a moment)."""
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from mailbridge.store.locks import lock_for
        lock = lock_for({url!r}, Path({str(data_dir)!r}), {NAME!r})
        assert lock.try_acquire()
        if {fork!r} and os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        print("held", os.getpid(), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("held"), "the child could not take the lock"
    return proc


def free_within(url: str, data_dir: Path, seconds: float) -> float:
    """How long until this process can take the lock (fails after `seconds`)."""
    started = time.monotonic()
    lock = lock_for(url, data_dir, NAME)
    while not lock.try_acquire():
        assert time.monotonic() - started < seconds, "the dead holder's lock was not let go"
        time.sleep(0.05)
    lock.release()
    return time.monotonic() - started


def test_a_held_lock_is_refused_and_its_holder_named(db_url: str, tmp_path: Path) -> None:
    proc = hold_in_child(db_url, tmp_path)
    try:
        lock = lock_for(db_url, tmp_path, NAME)
        assert not lock.try_acquire()
        holder = holder_of(db_url, tmp_path, NAME)
        assert holder is not None and holder.name.endswith(f":{proc.pid}")
        assert holder.since is not None
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_is_let_go_the_moment_its_holder_is_killed(db_url: str, tmp_path: Path) -> None:
    proc = hold_in_child(db_url, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    free_within(db_url, tmp_path, 5)
    assert holder_of(db_url, tmp_path, NAME) is None


def test_a_forked_child_does_not_keep_its_parents_lock(db_url: str, tmp_path: Path) -> None:
    proc = hold_in_child(db_url, tmp_path, fork=True)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        free_within(db_url, tmp_path, 5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the child, still sleeping


def test_a_released_lock_can_be_taken_and_a_second_taker_in_one_process_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    first = lock_for(db_url, tmp_path, NAME)
    second = lock_for(db_url, tmp_path, NAME)
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()
    assert lock_for(db_url, tmp_path, "mailbox:another").try_acquire()  # each name its own
    first.release()
    assert not first.still_held()
    assert second.try_acquire()
    second.release()


def test_a_removed_lock_file_is_a_lost_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    lock = lock_for(url, tmp_path, NAME)
    assert lock.try_acquire()
    lock_path(tmp_path, NAME).unlink()
    assert not lock.still_held()
    assert lock_for(url, tmp_path, NAME).try_acquire()


def test_a_lost_database_connection_is_a_lost_lock(pg_url: str, tmp_path: Path) -> None:
    lock = lock_for(pg_url, tmp_path, NAME)
    assert lock.try_acquire()
    admin = create_engine(pg_url)
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'mailbridge %' AND datname = current_database()"
            )
        )
    admin.dispose()
    assert not lock.still_held()
    other = lock_for(pg_url, tmp_path, NAME)
    assert other.try_acquire()
    other.release()


def test_a_server_that_ends_idle_sessions_does_not_end_the_lock(
    pg_url: str, tmp_path: Path
) -> None:
    """A DBA's idle_session_timeout (or a pooler's) would silently free the lock of a holder
    with nothing to say for a while; the lock's session turns it off for itself."""
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'ALTER DATABASE "{name}" SET idle_session_timeout = 500'))
    admin.dispose()
    lock = lock_for(pg_url, tmp_path, NAME)
    assert lock.try_acquire()
    time.sleep(1.5)
    assert lock.still_held()
    assert holder_of(pg_url, tmp_path, NAME) is not None
    lock.release()
