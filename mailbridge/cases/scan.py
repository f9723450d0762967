"""The optional virus scan of each attachment kept on a case (`[attachments] scan_command`).

The scanner is a program: ClamAV's `clamdscan --fdpass {path}` hands the file to a running
clamd. Its verdict is kept on the attachment; anything but a clean verdict holds the file
back (fail safe: a scanner that is missing, crashes or runs past the timeout is no proof).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from mailbridge.config import AttachmentsConfig

CLEAN = "clean"
_SHOWN = 200  # characters of the scanner's output kept with its verdict


def _said(output: bytes) -> str:
    """The scanner's first non-empty line, readable and short."""
    for line in output.decode("utf-8", "replace").splitlines():
        line = "".join(ch for ch in line if ch.isprintable()).strip()
        if line:
            return line[:_SHOWN]
    return ""


def scan(config: AttachmentsConfig, payload: bytes, work_dir: Path) -> str | None:
    """ "clean", "infected: <what the scanner said>" or "scan failed: <why>"; None when no
    scanner is configured. The file is written 0600 into `work_dir` (0700) and removed."""
    if not config.scan_command:
        return None
    work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=work_dir, prefix="scan-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        argv = [part.replace("{path}", name) for part in config.scan_command]
        on_stdin = argv == config.scan_command
        try:
            done = subprocess.run(
                argv,
                input=payload if on_stdin else None,
                stdin=None if on_stdin else subprocess.DEVNULL,
                capture_output=True,
                timeout=config.scan_timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"scan failed: no verdict within {config.scan_timeout_seconds} s"
        except OSError as exc:
            return f"scan failed: {argv[0]}: {exc.strerror or exc}"
    finally:
        Path(name).unlink(missing_ok=True)
    said = _said(done.stdout) or _said(done.stderr)
    if done.returncode == 0:
        return CLEAN
    if done.returncode == 1:
        return f"infected: {said}" if said else "infected"
    return f"scan failed: exit code {done.returncode}" + (f": {said}" if said else "")
