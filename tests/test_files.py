"""mailbridge/files.py keeps its promise where the umask does not help: in a process
under umask 022 (mailbridge used as a library, a test), what it creates is still 0600 in
0700 folders, SQLite's -wal and -shm beside the database included."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mailbridge.files import private_folder, private_open
from mailbridge.store.blobs import BlobStore
from mailbridge.store.db import make_engine


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def modes(*paths: Path) -> dict[str, str]:
    return {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in paths}


def test_folders_made_are_0700_and_one_already_there_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir(mode=0o755)
    private_folder(tmp_path / "shared" / "exports" / "2026")
    folders = (
        tmp_path / "shared",
        tmp_path / "shared" / "exports",
        tmp_path / "shared" / "exports" / "2026",
    )
    assert modes(*folders) == {"shared": "0o755", "exports": "0o700", "2026": "0o700"}


def test_a_file_written_is_0600_and_one_written_over_becomes_0600(tmp_path: Path) -> None:
    new, old = tmp_path / "new.csv", tmp_path / "last-month.csv"
    old.write_text("old")
    assert modes(old) == {"last-month.csv": "0o644"}
    for path in (new, old):
        with private_open(path, "w", encoding="utf-8") as stream:
            stream.write("Reference\n")
    assert modes(new, old) == {"new.csv": "0o600", "last-month.csv": "0o600"}
    assert old.read_text() == "Reference\n"


def test_the_databases_and_their_wal_and_shm_are_0600(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'mailbridge.db'}")
    blobs = BlobStore(tmp_path / "data")
    blobs.put(b"a resident's letter")
    with engine.begin() as conn:  # open while looked at: SQLite removes -wal and -shm at close
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        data = tmp_path / "data"
        files = [data / f"{base}{end}" for base in ("mailbridge.db", "blobs/blobs.sqlite")
                 for end in ("", "-wal", "-shm")]  # fmt: skip
        assert modes(data, data / "blobs", *files) == {
            "data": "0o700", "blobs": "0o700",
            **{p.name: "0o600" for p in files},
        }  # fmt: skip
    engine.dispose()
