"""The content-addressed blob store: one row per sha256, batches written whole when they end.

Inside `batch()` a blob is held in memory until the batch ends; the store must still find
it, another process must not (it is not durable yet), and an exception must leave nothing
behind. Files written by earlier versions are still read.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mailbridge.store import blobs
from mailbridge.store.blobs import BlobStore


def rows(store: BlobStore) -> dict[str, bytes]:
    """What is committed, read over a connection of its own, as another process would."""
    if not store.file.exists():
        return {}
    with sqlite3.connect(store.file) as db:
        return {d: bytes(b) for d, b in db.execute("SELECT sha256, data FROM blob")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_then_get_round_trips_under_the_sha256(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"Dear Council,\r\nThe pothole on Mill Lane is back.\r\n" + bytes(range(256))
    digest = store.put(data)
    assert digest == sha(data)
    assert store.file == tmp_path / "blobs" / "blobs.sqlite"
    assert rows(store) == {digest: data}  # committed when put returns
    assert store.get(digest) == data
    assert store.exists(digest)
    assert not store.exists(sha(b"never stored"))
    with pytest.raises(FileNotFoundError, match=f"blob {sha(b'never stored')} is not in"):
        store.get(sha(b"never stored"))


def test_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put(b"same bytes")
    second = store.put(b"same bytes")
    other = store.put(b"other bytes")
    assert first == second != other
    assert rows(store) == {first: b"same bytes", other: b"other bytes"}


def test_a_caller_may_pass_the_digest_it_computed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"raw message"
    assert store.put(data, sha256=sha(data)) == sha(data)
    assert store.get(sha(data)) == data


def test_a_batch_is_committed_only_when_it_ends(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"attachment bytes"
    with store.batch():
        digest = store.put(data)
        assert rows(store) == {}  # not yet durable: no other process sees it
        assert store.exists(digest)  # but the store already does
        assert store.get(digest) == data
        assert store.put(data) == digest  # a second put in the batch adds nothing
    assert rows(store) == {digest: data}
    assert store.get(digest) == data and store.exists(digest)


def test_a_batch_stores_many_blobs_each_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    many = [f"message {i}".encode() for i in range(20)]
    with store.batch():
        digests = [store.put(b) for b in many + many]
    assert len(set(digests)) == 20
    assert [store.get(d) for d in digests[:20]] == many
    assert rows(store) == {sha(b): b for b in many}


def test_put_many_is_durable_when_it_returns(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    many = [b"one", b"two", b"one"]
    assert store.put_many(many) == [sha(b) for b in many]
    assert rows(store) == {sha(b"one"): b"one", sha(b"two"): b"two"}


def test_a_blob_stored_before_the_batch_is_not_written_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"already here")
    with store.batch():
        assert store.put(b"already here") == digest
        assert store._pending == {}
        assert store.get(digest) == b"already here"


def test_an_exception_in_a_batch_writes_none_of_its_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    kept = store.put(b"stored before the batch")
    with pytest.raises(RuntimeError, match="transaction failed"), store.batch():
        digests = [store.put(b"one"), store.put(b"two")]
        raise RuntimeError("transaction failed")
    for digest in digests:
        assert not store.exists(digest)
    assert rows(store) == {kept: b"stored before the batch"}
    # The store works normally afterwards, outside and inside a batch.
    assert store.get(store.put(b"one")) == b"one"
    with store.batch():
        two = store.put(b"two")
    assert rows(store)[two] == b"two"


def full(store: BlobStore, pages: int) -> None:
    """Cap the store's database at `pages` pages: SQLite then fails as on a full disk."""
    store._connection().execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_named_and_the_store_goes_on_once_there_is_room(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(b"small")
    used = store._connection().execute("PRAGMA page_count").fetchone()[0]
    full(store, used)
    big = hashlib.sha256(b"x" * 200_000).hexdigest()
    with pytest.raises(sqlite3.OperationalError, match="full"), store.batch():  # not "rollback"
        store.put(b"x" * 200_000)
    with pytest.raises(FileNotFoundError):
        store.get(big)
    full(store, 1_000_000)  # room again
    with store.batch():
        assert store.put(b"x" * 200_000) == big
    assert store.get(big) == b"x" * 200_000


def test_a_nested_batch_leaves_the_write_to_the_outer_one(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.batch():
        with store.batch():
            inner = store.put(b"inner")
        assert inner not in rows(store)  # the inner end wrote nothing
        assert store.exists(inner) and store.get(inner) == b"inner"
        outer = store.put(b"outer")
    assert rows(store) == {inner: b"inner", outer: b"outer"}


def test_an_exception_in_a_nested_batch_discards_the_whole_outer_batch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError), store.batch():
        first = store.put(b"first")
        with store.batch():
            second = store.put(b"second")
            raise ValueError("inner failure")
    assert not store.exists(first) and not store.exists(second)
    assert rows(store) == {}


def test_a_large_batch_is_written_out_before_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of large attachments never sits in memory whole."""
    monkeypatch.setattr(blobs, "FLUSH_BYTES", 1000)
    store = BlobStore(tmp_path)
    with store.batch():
        first = store.put(b"a" * 600)
        assert rows(store) == {}
        second = store.put(b"b" * 600)  # past the limit: both written now
        assert set(rows(store)) == {first, second}
        third = store.put(b"c" * 10)
        assert third not in rows(store)
        assert store.get(first) == b"a" * 600  # read back from the database mid-batch
    assert set(rows(store)) == {first, second, third}


@pytest.mark.parametrize("layout", ["one level", "two levels"])
def test_blobs_written_as_files_by_earlier_versions_are_still_found(
    tmp_path: Path, layout: str
) -> None:
    """Data directories written before blobs moved into SQLite keep working, untouched."""
    store = BlobStore(tmp_path)
    data = b"an attachment stored by an earlier version"
    digest = sha(data)
    folder = tmp_path / "blobs" / digest[:2]
    legacy = (folder if layout == "one level" else folder / digest[2:4]) / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    assert store.exists(digest)
    assert store.get(digest) == data
    assert store.put(data) == digest  # already there: nothing written a second time
    assert rows(store) == {}
    assert legacy.read_bytes() == data


def test_a_name_that_is_not_a_digest_never_reaches_the_file_system(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    (tmp_path / "secret").write_bytes(b"not a blob")
    assert not store.exists("../../secret")
    with pytest.raises(FileNotFoundError):
        store.get("../../secret")


def _put_in_child(data_dir: Path, data: bytes) -> str:
    store = CHILD_STORE if CHILD_STORE is not None else BlobStore(data_dir)
    return store.put(data)


CHILD_STORE: BlobStore | None = None


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """The parse workers are forked: a connection the parent opened must not be shared."""
    global CHILD_STORE
    store = BlobStore(tmp_path)
    before = store.put(b"written by the parent")
    CHILD_STORE = store  # inherited by the fork, connection and all
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            digests = pool.starmap(
                _put_in_child, [(tmp_path, f"child {i}".encode()) for i in range(8)]
            )
    finally:
        CHILD_STORE = None
    assert digests == [sha(f"child {i}".encode()) for i in range(8)]
    # The parent's connection still works and sees what the children committed.
    assert store.get(before) == b"written by the parent"
    assert all(store.get(d) == f"child {i}".encode() for i, d in enumerate(digests))
    assert store.put(b"after the children") in rows(store)


def test_processes_writing_at_once_all_succeed(tmp_path: Path) -> None:
    """Writers wait for each other (the parse workers, the main process, a coordinator's
    command); none fails with 'database is locked'."""
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mailbridge.store.blobs import BlobStore\n"
        "store = BlobStore(Path(sys.argv[1]))\n"
        "for n in range(20):\n"
        "    store.put_many([f'{sys.argv[2]}-{n}-{i}'.encode() * 500 for i in range(10)])\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", program, str(tmp_path), str(w)]) for w in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert len(rows(BlobStore(tmp_path))) == 4 * 20 * 10


def _open_fresh_and_put(folder: str, word: str, start: Any, errors: Any) -> None:
    start.wait()  # both processes open the new store at the same moment
    try:
        BlobStore(Path(folder)).put_many([word.encode() * 10])
    except Exception as exc:  # noqa: BLE001 - reported to the test, which names it
        errors.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_making_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    """Two parse workers on a fresh data folder: the second to switch the new file to WAL
    was told 'database is locked' at once (65 times in 300 here), and its batch was parsed
    again in the main process. Forty fresh folders, two processes racing on each."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.SimpleQueue()
    folders = [tmp_path / f"data-{n}" for n in range(40)]
    for folder in folders:
        start = ctx.Barrier(2)
        racers = [
            ctx.Process(target=_open_fresh_and_put, args=(str(folder), w, start, errors))
            for w in ("one", "two")
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=30)
        assert [r.exitcode for r in racers] == [0, 0]
    failed = []
    while not errors.empty():
        failed.append(errors.get())
    assert failed == []
    assert all(len(rows(BlobStore(f))) == 2 for f in folders)


# --- removal -------------------------------------------------------------------------------


def _checkpointed_size(store: BlobStore) -> int:
    """The database file's size with the write-ahead log folded into it."""
    store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store.file.stat().st_size


def test_removal_deletes_only_what_nothing_names_any_more(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    kept, gone = store.put(b"still on another case"), store.put(b"only on the erased case")
    asked: list[set[str]] = []

    def named(candidates: set[str]) -> set[str]:
        asked.append(candidates)
        return {kept} & candidates

    assert store.remove({kept, gone}, named) == {gone}
    assert asked == [{kept, gone}]  # only the candidates, never the whole store
    assert store.exists(kept) and not store.exists(gone)
    assert store.put(b"only on the erased case") == gone  # arriving again: stored again
    assert store.get(gone) == b"only on the erased case"


def test_a_blob_written_as_a_file_by_an_earlier_version_is_removed_too(tmp_path: Path) -> None:
    data = b"kept as a file by version 0.3"
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blobs" / digest[:2] / digest
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert BlobStore(tmp_path).remove({digest}, lambda _: set()) == {digest}
    assert not path.exists()


def test_freed_pages_are_reused_so_the_file_does_not_grow(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put_many([bytes([n]) * 200_000 for n in range(20)])
    size = _checkpointed_size(store)
    store.remove(set(first), lambda _: set())
    store.put_many([bytes([n]) * 200_000 for n in range(100, 120)])  # as much again, new
    assert _checkpointed_size(store) <= size


def test_a_removal_waits_for_writers_that_have_not_committed(tmp_path: Path) -> None:
    """A writer holds the store from its put() to its commit (`keeping`): a removal that
    asked the database meanwhile would not see the writer's reference."""
    store = BlobStore(tmp_path)
    digest = store.put(b"the same attachment, arriving again")
    asked = threading.Event()

    def named(_: set[str]) -> set[str]:
        asked.set()
        return set()

    remover = threading.Thread(target=store.remove, args=({digest}, named))
    with store.keeping():
        store.put(b"the same attachment, arriving again")  # found stored: not written
        remover.start()
        remover.join(timeout=0.5)
        assert remover.is_alive() and not asked.is_set()  # waiting for the commit
    remover.join()
    assert asked.is_set()


def test_a_removal_inside_keeping_is_refused_rather_than_waiting_for_ever(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    with store.keeping(), pytest.raises(RuntimeError, match="wait for itself"):
        store.remove({"0" * 64}, lambda _: set())
