"""Large and complex messages benchmark: peak memory and time of `mailbridge run --once`.

Each scenario is ordinary enquiries plus what the issue feared (#13, item 4), in a fresh
data folder, on a Maildir or a real Dovecot, with the default limits unless it says:

    40mb     one 40 MB enquiry (just under [mailbox] max_message_bytes): read whole, a case
    attack   ten 50 MB emails: over the limit, read by their headers, quarantined too_large
    parts    one email of 5,000 attachments, under max_parts raised to 6,000: read whole

Prints, per scenario, the wall time of `run --once` (process start included) and the peak
RSS of each mailbridge process (VmHWM, read from /proc while it runs). Never pass/fail.

    .venv/bin/python bench/large_messages.py                    # every scenario, both mailboxes
    .venv/bin/python bench/large_messages.py --mailbox maildir --scenario 40mb
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from imapclient import IMAPClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import CountingHandler, enquiry, members, run_watched  # noqa: E402

from mailbridge.config import write_signing_key  # noqa: E402
from mailbridge.mailbox.maildir import maildir_drop  # noqa: E402
from tests.helpers.mail import large_attachment, many_parts  # noqa: E402
from tests.servers.dovecot import DovecotServer, running_dovecot  # noqa: E402

MB = 1024 * 1024
ORDINARY = 100
JUST_UNDER = 40 * MB - 64 * 1024  # [mailbox] max_message_bytes is 40 MB
SCENARIOS = {
    "40mb": ("one 40 MB enquiry", lambda who: [large_attachment(JUST_UNDER, 1, sender=who)], ""),
    "attack": (
        "ten 50 MB emails",
        lambda who: [large_attachment(50 * MB, n, sender=who) for n in range(10)],
        "",
    ),
    "parts": (
        "one email of 5,000 attachments",
        lambda who: [many_parts(5_000, sender=who)],
        "max_parts = 6000\n",
    ),
}


def config(work: Path, mailbox: str, smtp_port: int, extra: str) -> Path:
    write_signing_key(work / "signing.key")
    path = work / "config.toml"
    path.write_text(
        f"""
[mailbox]
{mailbox}
{extra}
[smtp]
url = "smtp://127.0.0.1:{smtp_port}"
from_address = "enquiries@example.gov.uk"
[database]
url = "sqlite:///{work / "mailbridge.db"}"
[storage]
data_dir = "{work / "data"}"
[logging]
level = "WARNING"
[security]
signing_key_file = "{work / "signing.key"}"
# What is measured is reading large mail, not proving its senders: members need no proof.
[trust.members]
require = "none"
[[service_areas]]
name = "Highways"
keywords = ["pothole", "road", "street light"]
"""
    )
    return path


@contextmanager
def smtp_server() -> Iterator[tuple[int, CountingHandler]]:
    handler = CountingHandler()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=0)
    smtp.start()
    try:
        yield port, handler
    finally:
        smtp.stop()


def run_once(cfg: Path, env: dict[str, str]) -> tuple[float, int, list[int], str]:
    """Wall time, the main process's peak RSS and its children's (kB, largest first), and
    what the run said."""
    cmd = [str(ROOT / ".venv/bin/mailbridge"), "run", "--once", "-c", str(cfg)]
    done, elapsed, pid, peaks = run_watched(cmd, env)
    if done.returncode != 0:
        sys.exit(f"mailbridge failed:\n{done.stdout}\n{done.stderr}")
    main = peaks.pop(pid, 0)
    return elapsed, main, sorted(peaks.values(), reverse=True), " ".join(done.stdout.split())


def scenario(name: str, box: str, dovecot: DovecotServer | None) -> None:
    what, make, extra = SCENARIOS[name]
    rng = random.Random(42)
    people = members(20)
    work = Path(tempfile.mkdtemp(prefix="mailbridge-bench-large-"))
    try:
        env = dict(os.environ)
        if dovecot is not None:
            dv = dovecot.add_user(f"bench-{name}")
            mailbox = (
                f'url = "imap://{dv.user}@{dv.host}:{dv.port}/"\n'
                'password_env = "BENCH_IMAP_PASSWORD"'
            )
            env["BENCH_IMAP_PASSWORD"] = dv.password
        else:
            mailbox = f'url = "maildir:{work / "mailbox"}"'
        earlier: dict[str, list[str]] = {}
        raws = [enquiry(i, rng.choice(people), rng, earlier) for i in range(ORDINARY)]
        raws[ORDINARY // 2 : ORDINARY // 2] = make(people[0][1])  # in the middle of the batch
        size = sum(map(len, raws))
        if dovecot is not None:
            with IMAPClient(dv.host, dv.port, ssl=False) as client:
                client.login(dv.user, dv.password)
                for raw in raws:
                    client.append("INBOX", raw)
        else:
            for raw in raws:
                maildir_drop(work / "mailbox", raw)
        del raws
        with smtp_server() as (port, handler):
            cfg = config(work, mailbox, port, extra)
            csv = work / "members.csv"
            rows = [f"{n},{e},,Division {i},District {i % 7},\n" for i, (n, e) in enumerate(people)]
            csv.write_text("name,email,extra_emails,division,district,party\n" + "".join(rows))
            subprocess.run(
                [str(ROOT / ".venv/bin/mailbridge"), "members", "import", str(csv), "-c", str(cfg)],
                check=True, env=env, capture_output=True,
            )  # fmt: skip
            elapsed, main, children, said = run_once(cfg, env)
            deadline = time.monotonic() + 30
            while handler.count == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        print(f"{name:7} {box:8} {what} and {ORDINARY} ordinary enquiries ({size / MB:.0f} MB)")
        print(f"        run --once    {elapsed:6.2f} s   {said}")
        print(
            f"        peak RSS      {main / 1024:6.0f} MB main process; its children (parse "
            f"worker, courier) {' + '.join(f'{kb / 1024:.0f}' for kb in children)} MB; "
            f"sum {(main + sum(children)) / 1024:.0f} MB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailbox", choices=["maildir", "imap", "both"], default="both")
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = ap.parse_args()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "mailbridge", "cli"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    print(f"date     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine  {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}")
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    boxes = ["maildir", "imap"] if args.mailbox == "both" else [args.mailbox]
    for box in boxes:
        with running_dovecot() if box == "imap" else nullcontext() as dovecot:
            for name in names:
                scenario(name, box, dovecot)


if __name__ == "__main__":
    main()
