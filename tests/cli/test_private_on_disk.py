"""What mailbridge writes is readable by its own user only, whatever umask it was started
under (issue #14: systemd's default is 022, which made the database and exports 0644).

The real `mailbridge` command runs in its own process, started under umask 022 as a service
or a login shell would start it; the test then reads the modes of what it left behind.
"""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailbridge.mailbox.maildir import maildir_drop
from tests.helpers.cli import CONFIG
from tests.helpers.clock import FIXED_NOW

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    """`mailbridge ARGS` in a new process started under umask 022."""
    before = os.umask(0o022)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "mailbridge", *args, "--config", str(home / "config.toml")],
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.umask(before)


def mailbridge(home: Path, *args: str) -> None:
    proc = start(home, *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def serve(home: Path) -> dict[str, str]:
    """`mailbridge run`, the service, until it has filed the mail; the modes of its SQLite
    files (with their -wal and -shm, there only while they are open) as it runs."""
    proc = start(home, "run")
    live: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            live = {p.name: mode(p) for p in sorted(home.rglob("*.*-[ws][ah][lm]"))}
            if len(live) == 4 and not any((home / "mailbox" / "new").iterdir()):
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and len(live) == 4, err
    return live


@dataclass
class Day:
    home: Path
    live: dict[str, str]  # SQLite's files while the service ran, name -> mode


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    """A day's work: upgrade, import, a pass over the sample mail, then every command that
    writes a file: export (CSV and XLSX), report (HTML and XLSX), attachments saved, backup."""
    home = tmp_path_factory.mktemp("private")
    (home / "config.toml").write_text(CONFIG, encoding="utf-8")
    mailbridge(home, "db", "upgrade")
    mailbridge(home, "members", "import", str(SAMPLES / "members.csv"))
    for raw in sorted((SAMPLES / "mail").glob("*.eml")):
        maildir_drop(home / "mailbox", raw.read_bytes(), FIXED_NOW)
    live = serve(home)
    mailbridge(home, "export", "--output", "out/cases.csv")
    mailbridge(home, "export", "--output", "out/cases.xlsx")
    mailbridge(home, "report", "--from", "2026-01-01", "--to", "2026-12-31", "--format", "html",
               "-o", "out/panel.html")  # fmt: skip
    mailbridge(home, "report", "--from", "2026-01-01", "--to", "2026-12-31", "--format", "xlsx",
               "-o", "out/panel.xlsx")  # fmt: skip
    with (home / "out" / "cases.csv").open(encoding="utf-8-sig") as stream:
        [care] = [r["Reference"] for r in csv.DictReader(stream) if "Care" in r["Subject"]]
    mailbridge(home, "case", "attachments", care, "--save", "saved/care")  # the letter
    mailbridge(home, "db", "backup", "backups")
    return Day(home, live)


def test_the_data_folder_and_the_backup_folder_are_the_users_alone(day: Day) -> None:
    home = day.home
    [backup] = (home / "backups").iterdir()
    folders = [home / "data", home / "data" / "blobs", home / "out", home / "saved", backup]
    assert {str(f.relative_to(home)): mode(f) for f in folders} == {
        str(f.relative_to(home)): "0o700" for f in folders
    }


def test_the_database_blob_store_and_their_logs_are_created_0600(day: Day) -> None:
    files = [day.home / "mailbridge.db", day.home / "data" / "blobs" / "blobs.sqlite"]
    assert {p.name: mode(p) for p in files} | day.live == {
        f"{base}{end}": "0o600"
        for base in ("mailbridge.db", "blobs.sqlite")
        for end in ("", "-wal", "-shm")
    }


def test_exports_reports_saved_attachments_and_backups_are_created_0600(day: Day) -> None:
    home = day.home
    written = [
        p
        for folder in ("out", "saved", "backups")
        for p in sorted((home / folder).rglob("*"))
        if p.is_file()
    ]
    names = {p.name for p in written}
    assert {"cases.csv", "cases.xlsx", "panel.html", "panel.xlsx"} <= names
    assert {"mailbridge.db", "blobs.sqlite"} <= names
    assert list((home / "saved" / "care").iterdir())
    assert {str(p.relative_to(home)): mode(p) for p in written} == {
        str(p.relative_to(home)): "0o600" for p in written
    }
