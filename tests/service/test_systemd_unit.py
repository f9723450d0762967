"""The README's systemd units (the service, and the web console beside it): hardened as
issue #14 asks, and units systemd accepts.

`systemd-analyze verify` reads the unit as systemd would: an unknown key, a value it cannot
parse or a command that is not there is reported (on standard error, exit code 0 for the
first two), so any output fails the test. The ExecStart path is the one machine-specific
part: it is pointed at this checkout's `mailbridge`.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mailbridge.mailbox.maildir import maildir_drop
from tests.helpers.cli import CONFIG
from tests.helpers.clock import FIXED_NOW
from tests.servers import unavailable

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = "/opt/mailbridge/.venv/bin/mailbridge"


# Each unit in the README, and the command it runs.
UNITS = {
    "mailbridge": f"{INSTALLED} run",
    "mailbridge-web": f"{INSTALLED} web --host 127.0.0.1 --port 8080",
}


def readme_unit(name: str = "mailbridge") -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pattern = rf"```ini\n(# /etc/systemd/system/{re.escape(name)}\.service\n.*?)```"
    found = re.search(pattern, readme, re.S)
    assert found, f"README.md has no ```ini block for {name}.service"
    return found[1]


def service_settings(unit: str) -> dict[str, str]:
    section = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("=", 1) for line in section.splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


@pytest.mark.parametrize("name", UNITS)
def test_the_unit_runs_mailbridge_private_and_confined(name: str) -> None:
    settings = service_settings(readme_unit(name))
    assert {key: settings.get(key) for key in (
        "UMask", "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp",
        "NoNewPrivileges",
    )} == {
        "UMask": "0077", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/mailbridge",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
    }  # fmt: skip
    assert settings["ExecStart"] == UNITS[name]
    assert settings["User"] == "mailbridge"
    assert settings["Environment"] == "MAILBRIDGE_CONFIG=/etc/mailbridge/config.toml"


@pytest.mark.parametrize("name", UNITS)
def test_systemd_accepts_the_unit(tmp_path: Path, name: str) -> None:
    if shutil.which("systemd-analyze") is None:
        unavailable("systemd-analyze", "Debian's systemd package (scripts/install-test-deps)")
    mailbridge = Path(sys.executable).parent / "mailbridge"
    assert mailbridge.is_file()
    unit = tmp_path / f"{name}.service"
    unit.write_text(readme_unit(name).replace(INSTALLED, str(mailbridge)), encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


# Inside `unshare --map-root-user --mount`: the unit's confinement, as far as a test can
# build it without systemd. Every mount it can is made read-only (ProtectSystem=strict) but the
# folder given (ReadWritePaths=), an empty /tmp (PrivateTmp=yes), empty /root and /home
# (ProtectHome=yes), no new privileges, and the umask a service gets without UMask=.
# Python itself is given back read-only wherever it is (under /root here, by pyenv: a
# service would run one installed under /usr or /opt, which ProtectHome leaves alone), and
# so is this checkout with its virtualenv (a clean clone may sit under /tmp or a home folder;
# installed, the code is under /opt).
CONFINE = """\
set -e
writable="$1"; python="$2"; code="$3"; shift 3
mount --rbind / /mnt
for m in $(awk '{print $5}' /proc/self/mountinfo | grep '^/mnt' | sort); do
  case "$m" in /mnt/proc*|/mnt/sys*|/mnt/dev*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
mount -t tmpfs -o mode=1777 none /mnt/tmp
mount -t tmpfs none /mnt/root
mount -t tmpfs none /mnt/home
mkdir -p "/mnt$python"
mount --bind "$python" "/mnt$python"
mount -o remount,bind,ro "/mnt$python"
mkdir -p "/mnt$code"
mount --bind "$code" "/mnt$code"
mount -o remount,bind,ro "/mnt$code"
mkdir -p "/mnt$writable"
mount --bind "$writable" "/mnt$writable"
umask 022
exec chroot /mnt setpriv --no-new-privs "$@"
"""


def can_confine() -> bool:
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    tried = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10)
    return tried.returncode == 0


def test_the_service_runs_confined_as_the_unit_confines_it(tmp_path: Path) -> None:
    """Nothing but the data folder (here beside the config, the Maildir mailbox and outbox)
    is written: a pass over the sample mail works with the rest of the machine read-only."""
    if not can_confine():
        unavailable("a confined run", "unshare and setpriv need user and mount namespaces")
    home = tmp_path / "srv"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG, encoding="utf-8")
    for raw in sorted((ROOT / "samples" / "mail").glob("*.eml")):
        maildir_drop(home / "mailbox", raw.read_bytes(), FIXED_NOW)
    config = ["--config", str(home / "config.toml")]
    members = [sys.executable, "-m", "mailbridge", "members", "import"]
    subprocess.run([*members, str(ROOT / "samples" / "members.csv"), *config], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", CONFINE, "sh", str(home), sys.base_prefix, str(ROOT),
         sys.executable, "-m", "mailbridge", "run", "--once", *config],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "3 new cases, 0 updates, 2 quarantined, 0 already handled, 0 failed"
    )
    assert "Traceback" not in done.stderr
    stored = home / "data" / "blobs" / "blobs.sqlite"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
