"""The content-addressed blob store: atomic writes, and batches whose fsyncs wait to the end.

Inside `batch()` a blob lives in a `.tmp-*` file until the batch ends; the store must still
find it, and an exception must leave neither the temporary file nor a final one behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mailbridge.blobs import BlobStore


def temp_files(store: BlobStore) -> list[Path]:
    if not store.root.exists():
        return []
    return sorted(store.root.rglob(".tmp-*"))


def stored_files(store: BlobStore) -> list[Path]:
    if not store.root.exists():
        return []
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def test_put_then_get_round_trips_under_the_sha256_name(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"Dear Council,\r\nThe pothole on Mill Lane is back.\r\n" + bytes(range(256))
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert store.path(digest).is_file()
    assert store.get(digest) == data
    assert store.exists(digest)
    assert not store.exists(hashlib.sha256(b"never stored").hexdigest())
    assert temp_files(store) == []


def test_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put(b"same bytes")
    second = store.put(b"same bytes")
    other = store.put(b"other bytes")
    assert first == second != other
    assert stored_files(store) == sorted([store.path(first), store.path(other)])


def test_a_batch_renames_into_place_only_when_it_ends(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"attachment bytes"
    with store.batch():
        digest = store.put(data)
        assert not store.path(digest).exists()  # not yet durable under its name
        [tmp] = temp_files(store)
        assert tmp.parent == store.path(digest).parent
        assert store.exists(digest)  # but the store already sees it
        assert store.get(digest) == data
        assert store.put(data) == digest  # a second put in the batch adds nothing
        assert len(temp_files(store)) == 1
    assert store.path(digest).read_bytes() == data
    assert temp_files(store) == []
    assert store.get(digest) == data and store.exists(digest)


def test_a_batch_stores_many_blobs_each_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blobs = [f"message {i}".encode() for i in range(20)]
    with store.batch():
        digests = [store.put(b) for b in blobs + blobs]
        assert stored_files(store) == temp_files(store)  # nothing final yet
    assert len(set(digests)) == 20
    assert [store.get(d) for d in digests[:20]] == blobs
    assert temp_files(store) == []
    assert len(stored_files(store)) == 20


def test_a_blob_stored_before_the_batch_is_not_written_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"already here")
    with store.batch():
        assert store.put(b"already here") == digest
        assert temp_files(store) == []
        assert store.get(digest) == b"already here"


def test_an_exception_in_a_batch_removes_its_temporary_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    kept = store.put(b"stored before the batch")
    with pytest.raises(RuntimeError, match="transaction failed"), store.batch():
        digests = [store.put(b"one"), store.put(b"two")]
        assert len(temp_files(store)) == 2
        raise RuntimeError("transaction failed")
    assert temp_files(store) == []
    for digest in digests:
        assert not store.path(digest).exists()
        assert not store.exists(digest)
    assert stored_files(store) == [store.path(kept)]
    # The store works normally afterwards, outside and inside a batch.
    assert store.get(store.put(b"one")) == b"one"
    with store.batch():
        two = store.put(b"two")
    assert store.path(two).read_bytes() == b"two"


def test_a_nested_batch_leaves_the_sync_to_the_outer_one(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.batch():
        with store.batch():
            inner = store.put(b"inner")
        assert not store.path(inner).exists()  # the inner end renamed nothing
        assert store.exists(inner) and store.get(inner) == b"inner"
        outer = store.put(b"outer")
    assert store.path(inner).read_bytes() == b"inner"
    assert store.path(outer).read_bytes() == b"outer"
    assert temp_files(store) == []


def test_an_exception_in_a_nested_batch_discards_the_whole_outer_batch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(ValueError), store.batch():
        first = store.put(b"first")
        with store.batch():
            second = store.put(b"second")
            raise ValueError("inner failure")
    assert temp_files(store) == []
    assert not store.path(first).exists() and not store.path(second).exists()


def test_blobs_of_the_earlier_two_level_layout_are_still_found(tmp_path: Path) -> None:
    """Data directories written before the one-level layout keep working, untouched."""
    store = BlobStore(tmp_path)
    data = b"an attachment stored by an earlier version"
    digest = hashlib.sha256(data).hexdigest()
    legacy = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    assert store.exists(digest)
    assert store.get(digest) == data
    assert store.put(data) == digest  # already there: not written a second time
    assert stored_files(store) == [legacy]
