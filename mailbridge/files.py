"""Files and folders holding residents' personal data: readable by mailbridge's user only.

The `mailbridge` command sets umask 077 for its whole process, and so for SQLite's -wal and
-shm files and whatever a library writes. These helpers make the same promise where the
umask may differ (mailbridge used as a library, a test): the case database, the blob store,
exports, reports, backups and saved attachments are created 0600, folders 0700.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> None:
    """`mkdir -p`, each folder it creates 0700; one already there is left as it is
    (`mailbridge check` says when the data folder is looser)."""
    path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=FOLDER_MODE)


def private_file(path: Path) -> None:
    """Create an empty file 0600 unless one is there: SQLite then keeps that mode, and gives
    it to the database's -wal and -shm files too. One that cannot be made (a folder not
    writable) is left to SQLite, whose error says so."""
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


@contextmanager
def private_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open `path` for writing, created 0600; a file written over is made 0600 too, as it
    now holds what this one does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, mode, **kwargs) as stream:
        yield stream
