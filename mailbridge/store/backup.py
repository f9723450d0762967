"""A consistent copy of what mailbridge keeps, taken while it runs (`mailbridge db backup`).

A SQLite file being written cannot be copied as a file: the copy may be torn, or miss what
sits in the write-ahead log. SQLite's online backup copies a database as of one moment
instead. The case database is copied first and the blob store second, so every raw email
and attachment the copied cases name is in the copied blobs (a blob is committed before
the case that names it). A PostgreSQL case database is left to pg_dump.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailbridge.config import Config
from mailbridge.errors import UserError
from mailbridge.files import FOLDER_MODE, private_file, private_folder, private_open
from mailbridge.store.blobs import FILE_NAME


@dataclass
class BackupReport:
    folder: Path
    copied: list[Path] = field(default_factory=list)  # inside `folder`
    blob_files: int = 0  # blobs kept as files by earlier versions
    postgres: bool = False  # the case database was not copied: pg_dump it


def backup(config: Config, destination: Path, now: datetime) -> BackupReport:
    """Copy into a new folder `destination/mailbridge-YYYYmmdd-HHMMSS`; never overwrite."""
    folder = Path(destination) / f"mailbridge-{now:%Y%m%d-%H%M%S}"
    try:
        private_folder(folder.parent)
        folder.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        raise UserError(f"{folder} already exists: choose another folder") from None
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror}") from exc
    report = BackupReport(folder)
    url = config.database.url
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        report.copied.append(_copy_sqlite(database, folder / database.name))
    else:
        report.postgres = True
    blobs = Path(config.storage.data_dir) / "blobs"
    if (blobs / FILE_NAME).exists():
        report.copied.append(_copy_sqlite(blobs / FILE_NAME, folder / "blobs" / FILE_NAME))
    for path in sorted(blobs.rglob("*")) if blobs.is_dir() else []:
        if path.is_file() and len(path.name) == 64 and path.name.isalnum():
            target = folder / "blobs" / path.relative_to(blobs)
            private_folder(target.parent)
            # Written once, never changed: a plain copy is whole.
            with path.open("rb") as source, private_open(target, "wb") as copy:
                shutil.copyfileobj(source, copy)
            report.blob_files += 1
    return report


def _copy_sqlite(source: Path, target: Path) -> Path:
    if not source.exists():
        raise UserError(f"{source} does not exist: check [database] url and [storage] data_dir")
    private_folder(target.parent)
    private_file(target)  # SQLite keeps the mode of the file it opens
    try:
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        raise UserError(f"cannot copy {source}: {exc}") from exc
    return target
