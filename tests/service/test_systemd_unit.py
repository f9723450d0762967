"""The README's systemd unit: hardened as issue #14 asks, and a unit systemd accepts.

`systemd-analyze verify` reads the unit as systemd would: an unknown key, a value it cannot
parse or a command that is not there is reported (on standard error, exit code 0 for the
first two), so any output fails the test. The ExecStart path is the one machine-specific
part: it is pointed at this checkout's `mailbridge`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = "/opt/mailbridge/.venv/bin/mailbridge"


def readme_unit() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```ini\n(# /etc/systemd/system/mailbridge\.service\n.*?)```", readme, re.S)
    assert found, "README.md has no ```ini block for mailbridge.service"
    return found[1]


def service_settings(unit: str) -> dict[str, str]:
    section = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("=", 1) for line in section.splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def test_the_unit_runs_mailbridge_private_and_confined() -> None:
    settings = service_settings(readme_unit())
    assert {key: settings.get(key) for key in (
        "UMask", "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp",
        "NoNewPrivileges",
    )} == {
        "UMask": "0077", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/mailbridge",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
    }  # fmt: skip
    assert settings["ExecStart"] == f"{INSTALLED} run"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    mailbridge = Path(sys.executable).parent / "mailbridge"
    assert mailbridge.is_file()
    unit = tmp_path / "mailbridge.service"
    unit.write_text(readme_unit().replace(INSTALLED, str(mailbridge)), encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
