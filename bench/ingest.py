"""Ingest benchmark: N realistic enquiry emails through a real Dovecot, mailbridge and aiosmtpd.

Prints mailbridge's emails/s (wall clock of `mailbridge run --once` in a fresh process,
until every message is a case and every acknowledgement was accepted by the SMTP server)
and the peak RSS of each of its processes; beside it, in the same run, the limit: fetching
the same messages with imapclient and parsing them with mail-parser alone. Never pass/fail:
it prints figures.

    .venv/bin/python bench/ingest.py            # 1,000 emails, SQLite
    .venv/bin/python bench/ingest.py -n 5000 --database postgres
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import mailparser
import psutil
import sqlalchemy
from aiosmtpd.controller import Controller
from imapclient import IMAPClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbridge.config import write_signing_key  # noqa: E402
from tests.servers.dovecot import running_dovecot  # noqa: E402

FIRST = ["Jane", "Raj", "Margaret", "David", "Helen", "Tom", "Aisha", "Gareth", "Sue", "Li"]
LAST = ["Smith", "Patel", "Owen", "Okafor", "Jones", "Baker", "Rahman", "Lewis", "Wood", "Chen"]
TOPICS = [
    (
        "Pothole on {road}",
        "A resident reports a deep pothole on {road} outside number {n}. "
        "Two cars have had damaged tyres. Could Highways inspect the road?",
    ),
    (
        "School transport for a pupil in {town}",
        "A family in {town} has been refused home to "
        "school transport after a house move. Could School Transport review the decision?",
    ),
    (
        "Care package review in {town}",
        "A constituent's carer visits were cut without an "
        "assessment. Could Adult Social Care review the care package?",
    ),
    (
        "Street light out on {road}",
        "The street light on {road} near number {n} has been out "
        "for two weeks and the pavement is dark at school pick-up time.",
    ),
    (
        "Fly-tipping in {town}",
        "Bags of rubbish have been dumped behind the shops in {town} "
        "for a week. Could this be cleared?",
    ),
]
ROADS = ["Mill Lane", "Church Street", "Station Road", "High Street", "London Road"]
TOWNS = ["Market Harborough", "Lutterworth", "Oadby", "Loughborough", "Melton Mowbray"]


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.count += 1
        return "250 OK"


def members(n: int) -> list[tuple[str, str]]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        name = f"Cllr {rng.choice(FIRST)} {rng.choice(LAST)}"
        out.append((name, f"member{i:03d}@example.gov.uk"))
    return out


def enquiry(
    i: int, who: tuple[str, str], rng: random.Random, earlier: dict[str, list[str]]
) -> bytes:
    subject_t, body_t = rng.choice(TOPICS)
    fill = {"road": rng.choice(ROADS), "town": rng.choice(TOWNS), "n": rng.randint(1, 120)}
    msg = EmailMessage()
    # What the council's gateway writes on top of every message it accepts ([trust]): the
    # production path reads and judges it.
    msg["Authentication-Results"] = (
        "mx.example.gov.uk; dkim=pass header.d=example.gov.uk header.s=s1; "
        "spf=pass smtp.mailfrom=example.gov.uk; dmarc=pass (p=reject) header.from=example.gov.uk"
    )
    msg["From"] = f"{who[0]} <{who[1]}>"
    msg["To"] = "Member Enquiries <enquiries@example.gov.uk>"
    msg["Date"] = format_datetime(datetime(2026, 11, 24, 9, tzinfo=UTC) + timedelta(seconds=i))
    message_id = f"<bench-{i}-{uuid.uuid4().hex[:8]}@mail.example.gov.uk>"
    msg["Message-ID"] = message_id
    subject = subject_t.format(**fill)
    mine = earlier.setdefault(who[1], [])
    if mine and i % 10 == 9:  # a tenth are the member chasing an earlier enquiry of theirs
        parent = rng.choice(mine)
        msg["In-Reply-To"] = parent
        msg["References"] = parent
        subject = f"RE: {subject}"
    msg["Subject"] = subject
    body = body_t.format(**fill)
    text = f"Hello,\n\n{body}\n\nMany thanks,\n{who[0]}\nCounty Councillor\n"
    msg.set_content(text * 3)
    msg.add_alternative(
        f"<html><body><p>Hello,</p><p>{body}</p>" * 3 + "</body></html>", subtype="html"
    )
    if i % 5 == 0:  # a fifth carry a ~100 KB attachment
        msg.add_attachment(
            rng.randbytes(100 * 1024),
            maintype="application",
            subtype="pdf",
            filename=f"evidence-{i}.pdf",
        )
    mine.append(message_id)
    return msg.as_bytes()


def set_up(
    work: Path, mailbox_url: str, smtp_port: int, db_url: str, mailbox_extra: str = ""
) -> Path:
    """The benchmarks' config in `work` (a quiet log, the council's gateway named, no digests,
    limits no councillor reaches) and its database with the 60 members; the config's path."""
    write_signing_key(work / "signing.key")  # `run` refuses to start without one
    config = work / "config.toml"
    config.write_text(
        f"""
[mailbox]
url = "{mailbox_url}"
password_env = "BENCH_IMAP_PASSWORD"
{mailbox_extra}[smtp]
url = "smtp://127.0.0.1:{smtp_port}"
from_address = "enquiries@example.gov.uk"
[database]
url = "{db_url}"
[storage]
data_dir = "{work / "data"}"
[logging]
level = "WARNING"
[security]
signing_key_file = "{work / "signing.key"}"
[trust]
authserv_ids = ["mx.example.gov.uk"]
[schedule]
# Digests go out by the clock: none in the middle of a run that counts the mail sent.
coordinator_digest_at = ""
member_digest_at = ""
management_summary_at = ""
[limits]
# 60 members write all the emails within minutes: far beyond any councillor, not a flood.
new_cases_per_sender_per_hour = 1000000
new_cases_per_sender_per_day = 1000000
[[service_areas]]
name = "Highways"
keywords = ["pothole", "road", "street light"]
[[service_areas]]
name = "School Transport"
keywords = ["school transport"]
""",
        encoding="utf-8",
    )
    csv = work / "members.csv"
    csv.write_text(
        "name,email,extra_emails,division,district,party\n"
        + "".join(
            f"{n},{e},,Division {i},District {i % 7},Independent\n"
            for i, (n, e) in enumerate(members(60))
        )
    )
    subprocess.run(
        [sys.executable, "-m", "mailbridge", "members", "import", str(csv), "-c", str(config)],
        check=True,
        capture_output=True,
    )
    return config


def watch_peaks(pid: int, stop: threading.Event, peaks: dict[int, int]) -> None:
    """Each mailbridge process's peak RSS (VmHWM, kB), read until the run ends.

    Not ru_maxrss: a child forked from this process, which holds every test message, starts
    with this process's pages resident and ru_maxrss keeps that figure across the exec.
    """
    family = [pid]
    polls = 0
    while not stop.wait(0.1):
        if polls % 10 == 0:  # listing processes costs ~2 ms: the workers start early, once
            with contextlib.suppress(psutil.Error):
                family = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        polls += 1
        for member in family:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{member}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):  # absent once the process is a zombie
                        peaks[member] = max(peaks.get(member, 0), int(line.split()[1]))


def run_watched(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float, int, dict[int, int]]:
    """Run a command to its end: what it said, its wall time, its pid and the peak RSS of
    it and each of its children (kB by pid, watch_peaks)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_peaks, args=(proc.pid, stop, peaks))
    watcher.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    watcher.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), elapsed, proc.pid, peaks


def measure_limit(host: str, port: int, user: str, password: str, batch: int) -> float:
    """imapclient fetch + mail-parser parse of everything in INBOX, nothing else."""
    start = time.perf_counter()
    with IMAPClient(host, port, ssl=False) as client:
        client.login(user, password)
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        for i in range(0, len(uids), batch):
            chunk = uids[i : i + batch]
            for data in client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE"]).values():
                mailparser.parse_from_bytes(data[b"BODY[]"])
    return len(uids) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="emails (default 1000)")
    ap.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--profile", metavar="FILE", help="run mailbridge under cProfile into FILE")
    ap.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server to create a scratch database on",
    )
    ap.add_argument(
        "--parse-workers", metavar="N", help="[mailbox] parse_workers (default: the config's)"
    )
    args = ap.parse_args()
    workers = f"parse_workers = {int(args.parse_workers)}\n" if args.parse_workers else ""

    rng = random.Random(42)
    people = members(60)
    work = Path(tempfile.mkdtemp(prefix="mailbridge-bench-"))
    handler = CountingHandler()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    pg_name = None
    try:
        with running_dovecot() as dv:
            if args.database == "sqlite":
                db_url = f"sqlite:///{work / 'mailbridge.db'}"
            else:
                pg_name = f"mb_bench_{uuid.uuid4().hex[:8]}"
                admin = sqlalchemy.create_engine(args.pg, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{pg_name}"')
                admin.dispose()
                db_url = args.pg.rsplit("/", 1)[0] + "/" + pg_name
            config = set_up(
                work, f"imap://{dv.user}@{dv.host}:{dv.port}/", smtp_port, db_url, workers
            )
            env = {**os.environ, "BENCH_IMAP_PASSWORD": dv.password}
            mb = [str(ROOT / ".venv/bin/mailbridge")]

            earlier: dict[str, list[str]] = {}
            raws = [enquiry(i, rng.choice(people), rng, earlier) for i in range(args.n)]
            size = sum(map(len, raws))
            with IMAPClient(dv.host, dv.port, ssl=False) as client:
                client.login(dv.user, dv.password)
                for raw in raws:
                    client.append("INBOX", raw)

            limit = measure_limit(dv.host, dv.port, dv.user, dv.password, 200)
            # Byte-compiled, as an installed package is (pip compiles a wheel's modules):
            # with PYTHONDONTWRITEBYTECODE set, an editable checkout recompiles every start.
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "mailbridge", "cli"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            cmd = [*mb, "run", "--once", "-c", str(config)]
            if args.profile:
                cmd = [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "mailbridge",
                       *cmd[1:]]  # fmt: skip
            done, elapsed, _pid, peaks = run_watched(cmd, env)
            if done.returncode != 0:
                sys.exit(f"mailbridge failed:\n{done.stdout}\n{done.stderr}")
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
            eng = sqlalchemy.create_engine(db_url)
            with eng.connect() as conn:
                cases = conn.exec_driver_sql('select count(*) from "case"').scalar_one()
                # From the first case stored to the last acknowledgement accepted: the rate
                # once start-up (imports, login, the first fetch and parse) is behind it.
                first, last = conn.exec_driver_sql(
                    'select (select min(created_at) from "case"), (select max(sent_at) from outbox)'
                ).one()
                steady = (
                    datetime.fromisoformat(str(last)) - datetime.fromisoformat(str(first))
                ).total_seconds()
            eng.dispose()
            summary = " ".join(done.stdout.split())
    finally:
        smtp.stop()
        shutil.rmtree(work, ignore_errors=True)
        if pg_name:
            admin = sqlalchemy.create_engine(args.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            admin.dispose()

    rate = args.n / elapsed
    print(f"date            {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine         {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print(f"emails          {args.n} ({size / 1e6:.1f} MB; a fifth with a 100 KB attachment)")
    print(f"database        {args.database}")
    print(f"cases opened    {cases} (a tenth of the emails are members chasing their own)")
    print(f"run --once      {summary}")
    print(f"acks accepted   {handler.count} by aiosmtpd")
    print(
        f"mailbridge      {rate:7.0f} emails/s  ({elapsed:.2f} s for `run --once`, "
        "process start included)"
    )
    print(
        f"after start-up  {args.n / steady:7.0f} emails/s  (first case to last acknowledgement; "
        f"start-up and exit {elapsed - steady:.2f} s)"
    )
    print(f"limit           {limit:7.0f} emails/s  (imapclient fetch + mail-parser only)")
    print(f"ratio           {rate / limit:7.2f}")
    largest = sorted(peaks.values(), reverse=True)
    print(
        f"peak RSS        {largest[0] / 1024 if largest else 0:7.0f} MB  (the largest mailbridge "
        f"process; all {len(largest)}: {' + '.join(f'{kb / 1024:.0f}' for kb in largest)} MB)"
    )
    print(f"CPU             {cpu / args.n * 1000:7.2f} ms per email  (mailbridge and its workers)")


if __name__ == "__main__":
    main()
