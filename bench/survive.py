"""Survival benchmark: what `mailbridge run` survives, tried as an operator would, on a real
Dovecot, aiosmtpd and SQLite or PostgreSQL. Prints one table row per scenario with counts
and times; never pass/fail.

Scenarios (each selectable by name):

* takeover: N enquiries waiting in INBOX, D daemons on the one mailbox (2 on SQLite, 3 on
  PostgreSQL), the active one's whole process group SIGKILLed K times at spread-out points of
  the backlog, a replacement started after each kill (as systemd's Restart=always would).
  Counts messages with no case (lost), with more than one (doubled), acknowledgements the SMTP
  server accepted twice; times from each kill until another daemon holds the lease, and
  until every acknowledgement that was claimed but not yet accepted at the kill is accepted.
* restart: one daemon; K rounds of M enquiries, each round's daemon SIGKILLed (its process
  group) while it delivers to an SMTP server taking --smtp-delay per message, and restarted
  at once: the time from the restart until every acknowledgement of the round is accepted.
* person: one daemon working through N enquiries while a second IMAP client (a person in
  Outlook) moves and deletes messages at random from INBOX: daemon crashes (restarted as
  systemd would), doubled, and what the person took against what became a case.

    .venv/bin/python bench/survive.py                       # every scenario (~10 minutes)
    .venv/bin/python bench/survive.py takeover --database postgres -n 2000 -k 5
    .venv/bin/python bench/survive.py restart --database sqlite postgres -k 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import Engine, create_engine, func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.console import scratch_database  # noqa: E402
from bench.ingest import enquiry, members, set_up  # noqa: E402
from mailbridge.store.models import Message, OutboxMessage, OutboxStatus, utcnow  # noqa: E402
from tests.servers.dovecot import SPARE_USERS, DovecotServer, running_dovecot  # noqa: E402
from tests.servers.fleet import Fleet  # noqa: E402

SCENARIOS = ("takeover", "restart", "person")
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<?([^>\r\n]+)>?", re.IGNORECASE | re.MULTILINE)
PERSON_FOLDER = "Kept by hand"  # where the person files what they take
MAILBRIDGE_FOLDERS = ("Processed", "Quarantine")
_users = iter(SPARE_USERS)  # a fresh, empty mailbox for each run


def message_id_of(raw: bytes) -> str:
    """The Message-ID of an email, without its angle brackets, as mailbridge stores it."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = MESSAGE_ID.search(head)
    return found.group(1).decode() if found else ""


@dataclass
class Arrivals:
    """The SMTP server's handler: each Message-ID accepted, with the moments it arrived
    (time.monotonic, this process's clock, the one the kills are timed on)."""

    delay: float = 0.0  # seconds over each message, as a real relay takes
    times: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        mid = message_id_of(envelope.content)
        with self.lock:
            self.times.setdefault(mid, []).append(time.monotonic())
        return "250 OK"

    def accepted(self) -> set[str]:
        with self.lock:
            return set(self.times)

    def first_after(self, mid: str, moment: float) -> float | None:
        with self.lock:
            return next((t for t in self.times.get(mid, []) if t >= moment), None)

    def twice(self) -> int:
        """Acknowledgements accepted more than once (the second and later copies)."""
        with self.lock:
            return sum(len(times) - 1 for times in self.times.values())


@dataclass
class Rig:
    """One run's mailbox, SMTP server, database and config."""

    imap: DovecotServer
    arrivals: Arrivals
    engine: Engine
    config: Path
    env: dict[str, str]
    fleet: Fleet  # the daemons on this mailbox
    ids: list[str] = field(default_factory=list)  # Message-IDs appended so far
    rng: random.Random = field(default_factory=lambda: random.Random(42))
    earlier: dict[str, list[str]] = field(default_factory=dict)

    def append(self, n: int) -> None:
        """N more enquiries into INBOX (a tenth chase an earlier one), in one go."""
        people = members(60)
        start = len(self.ids)
        raws = [
            enquiry(i, self.rng.choice(people), self.rng, self.earlier)
            for i in range(start, start + n)
        ]
        with self.imap.client() as client:
            for chunk in range(0, n, 200):
                client.multiappend(
                    "INBOX",
                    [{"msg": raw, "date": datetime.now(UTC)} for raw in raws[chunk : chunk + 200]],
                )
        self.ids += [message_id_of(raw) for raw in raws]

    def inbound(self) -> Counter[str]:
        """Inbound messages stored, by Message-ID (each is a case or part of one)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Message.message_id).where(Message.direction == "in"))
            return Counter(r[0] for r in rows)

    def stored(self) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(Message).where(Message.direction == "in")
            return int(conn.execute(query).scalar_one())

    def queued(self) -> set[str]:
        """Every outgoing email's Message-ID (the acknowledgements)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(OutboxMessage.message_id))
            return {r[0].strip("<>") for r in rows}

    def claimed(self) -> set[str]:
        """Outgoing mail a sender has claimed and not yet marked sent: its lease runs on."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(OutboxMessage.message_id).where(
                    OutboxMessage.status == OutboxStatus.PENDING,
                    OutboxMessage.next_attempt_at > utcnow(),
                )
            )
            return {r[0].strip("<>") for r in rows}

    def inbox_empty(self) -> bool:
        return not self.imap.uids("INBOX")

    def all_accepted(self) -> bool:
        return self.queued() <= self.arrivals.accepted()


def wait_until(condition: Callable[[], bool], seconds: float, step: float = 0.2) -> bool:
    """Whether the condition came true within the seconds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@contextlib.contextmanager
def rig(
    dovecot: DovecotServer, database: str, pg_admin_url: str, smtp_delay: float = 0.0
) -> Iterator[Rig]:
    """A fresh mailbox, SMTP server and scratch database, with a config naming them."""
    imap = replace(dovecot, user=next(_users))
    arrivals = Arrivals(delay=smtp_delay)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    with (
        contextlib.ExitStack() as cleanup,
        tempfile.TemporaryDirectory(prefix="mailbridge-survive-") as tmp,
        scratch_database(database, pg_admin_url, Path(tmp) / "mailbridge.db") as db_url,
    ):
        cleanup.callback(smtp.stop)
        work = Path(tmp)
        config = set_up(work, f"imap://{imap.user}@{imap.host}:{imap.port}/", smtp_port, db_url)
        env = {**os.environ, "BENCH_IMAP_PASSWORD": imap.password}
        engine = create_engine(db_url)
        cleanup.callback(engine.dispose)
        fleet = Fleet(config, env)
        cleanup.callback(kill_survivors, fleet)
        yield Rig(imap, arrivals, engine, config, env, fleet)


def kill_survivors(fleet: Fleet) -> None:
    """Whatever happened to the run, no daemon of it lives on."""
    for daemon in fleet.daemons:
        if daemon.alive:
            fleet.kill(daemon)


def stop(fleet: Fleet) -> int:
    """Stop the fleet; the tracebacks in all its logs."""
    fleet.stop()
    return fleet.logs().count("Traceback")


def max_median(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{max(values):.1f} / {statistics.median(values):.1f} s"


def takeover(rig: Rig, n: int, daemons: int, kills: int, ack_wait: float) -> dict[str, str]:
    rig.append(n)
    fleet = rig.fleet
    fleet.start(daemons)
    fleet.wait_for_holder(60)
    takeovers: list[float] = []
    waiting: list[tuple[float, set[str]]] = []  # per kill: its moment, acks claimed then
    for k in range(1, kills + 1):
        mark = n * k // (kills + 1)
        if not wait_until(lambda mark=mark: rig.stored() >= mark, 600):
            break
        active = fleet.wait_for_holder(60)
        fleet.kill(active)
        killed_at = time.monotonic()
        accepted = rig.arrivals.accepted()
        waiting.append((killed_at, rig.claimed() - accepted))
        while (holder := fleet.holder()) is None or holder is active:
            if time.monotonic() - killed_at > 120:
                break
            time.sleep(0.02)
        else:
            takeovers.append(time.monotonic() - killed_at)
        fleet.start(1)  # the replacement, as Restart=always starts it
    done = wait_until(rig.inbox_empty, 600, 0.5) and wait_until(rig.all_accepted, ack_wait, 0.5)
    tracebacks = stop(fleet)
    recovered, late = recovery(rig.arrivals, waiting)
    if late:
        recover = f"{late} not within {ack_wait:.0f} s"
    elif recovered:
        claimed = len(set().union(*(mids for _, mids in waiting)))
        recover = f"{max(recovered):.1f} s ({claimed} acks claimed at the kills)"
    else:
        recover = "- (none waiting)"
    return summary(
        rig,
        scenario=f"standby takeover, {daemons} daemons",
        kills=str(len(waiting)),
        takeovers=str(len(takeovers)),
        take_over=max_median(takeovers),
        recover=recover,
        other=f"{tracebacks} tracebacks" + ("" if done else "; did not finish"),
    )


def recovery(arrivals: Arrivals, waiting: list[tuple[float, set[str]]]) -> tuple[list[float], int]:
    """Per kill, the time until its waiting acknowledgements were all accepted; and how many
    were never accepted."""
    times, late = [], 0
    for moment, mids in waiting:
        firsts = [arrivals.first_after(mid, moment) for mid in mids]
        late += sum(t is None for t in firsts)
        if mids and all(t is not None for t in firsts):
            times.append(max(firsts) - moment)  # type: ignore[type-var]
    return times, late


def restart(rig: Rig, per_round: int, rounds: int, ack_wait: float) -> dict[str, str]:
    fleet = rig.fleet
    [daemon] = fleet.start(1)
    fleet.wait_for_holder(60)
    kills = 0
    recovered: list[float] = []  # per round, from the restart until all its acks are accepted
    for _ in range(rounds):
        base = len(rig.arrivals.accepted())
        rig.append(per_round)
        if not wait_until(lambda base=base: len(rig.arrivals.accepted()) >= base + per_round // 3,
                          300, 0.01):  # fmt: skip
            break  # delivery never began: nothing to kill it in the middle of
        fleet.kill(daemon)
        kills += 1
        [daemon] = fleet.start(1)
        restarted_at = time.monotonic()
        if wait_until(lambda: rig.inbox_empty() and rig.all_accepted(), ack_wait, 0.05):
            recovered.append(time.monotonic() - restarted_at)
    tracebacks = stop(fleet)
    late = kills - len(recovered)
    return summary(
        rig,
        scenario=f"process group killed mid-delivery, restarted ({rig.arrivals.delay * 1000:.0f} "
        "ms per message at SMTP)",
        kills=str(kills),
        takeovers="-",
        take_over="-",
        recover=(
            f"{max_median(recovered)} from restart"
            if not late
            else f"{late} of {kills} rounds not within {ack_wait:.0f} s"
        ),
        other=f"{tracebacks} tracebacks",
    )


@dataclass
class Person:
    """A person in the shared mailbox: files or deletes a message in INBOX every 0.1-0.5 s,
    half the time one of the first hundred (those mailbridge is working on)."""

    imap: DovecotServer
    deleted: set[str] = field(default_factory=set)  # Message-IDs they deleted (or tried to)
    actions: int = 0
    refused: int = 0  # the server said no (mailbridge had it first)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(3)
        with self.imap.client() as client:
            client.create_folder(PERSON_FOLDER)
            client.select_folder("INBOX")
            while not self.stopping.is_set():
                uids = sorted(client.search("ALL"))
                if uids:
                    uid = rng.choice(uids[:100] if rng.random() < 0.5 else uids)
                    try:
                        self.take(client, uid, rng.random() < 0.5)
                    except IMAPClientError:
                        self.refused += 1
                self.stopping.wait(rng.uniform(0.1, 0.5))

    def take(self, client: IMAPClient, uid: int, delete: bool) -> None:
        self.actions += 1
        if not delete:
            client.move([uid], PERSON_FOLDER)
            return
        found = client.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        for data in found.values():
            header = next((v for k, v in data.items() if k.startswith(b"BODY[")), b"")
            self.deleted.add(message_id_of(header))
        client.delete_messages([uid])
        client.expunge([uid])


def folders_of(imap: DovecotServer) -> dict[str, set[str]]:
    """Each Message-ID in the mailbox with the folders it is in."""
    where: dict[str, set[str]] = {}
    with imap.client() as client:
        for _flags, _sep, name in client.list_folders():
            folder = name if isinstance(name, str) else name.decode()
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                for data in client.fetch(chunk, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).values():
                    header = next((v for k, v in data.items() if k.startswith(b"BODY[")), b"")
                    where.setdefault(message_id_of(header), set()).add(folder)
    return where


def person(rig: Rig, n: int, ack_wait: float) -> dict[str, str]:
    rig.append(n)
    fleet = rig.fleet
    [daemon] = fleet.start(1)
    fleet.wait_for_holder(60)
    someone = Person(rig.imap)
    thread = threading.Thread(target=someone.run)
    thread.start()
    crashes = 0
    deadline = time.monotonic() + 900
    try:
        while not rig.inbox_empty() and time.monotonic() < deadline:
            if not daemon.alive:
                crashes += 1
                [daemon] = fleet.start(1)  # as Restart=always would
            time.sleep(0.2)
    finally:
        someone.stopping.set()
        thread.join()
    wait_until(rig.all_accepted, ack_wait, 0.5)
    crashes += not daemon.alive
    tracebacks = stop(fleet)
    where = folders_of(rig.imap)
    inbound = rig.inbound()
    taken = [m for m in rig.ids if not where.get(m, set()) & set(MAILBRIDGE_FOLDERS)]
    taken_with_case = sum(m in inbound for m in taken)
    nowhere = [m for m in rig.ids if m not in where]
    lost_by_us = [m for m in nowhere if m not in someone.deleted]
    both = sum(len(where.get(m, set()) & {PERSON_FOLDER, *MAILBRIDGE_FOLDERS}) > 1 for m in rig.ids)
    without_case = [
        m for m in rig.ids if where.get(m, set()) & set(MAILBRIDGE_FOLDERS) and m not in inbound
    ]
    return summary(
        rig,
        scenario="a person moving and deleting in INBOX",
        kills="-",
        takeovers="-",
        take_over="-",
        recover="-",
        other=(
            f"{crashes} crashes, {tracebacks} tracebacks; the person took {len(taken)} "
            f"({taken_with_case} after their case was committed, {len(taken) - taken_with_case} "
            f"untouched by mailbridge; {someone.refused} of {someone.actions} tries refused); "
            f"filed by mailbridge without a case {len(without_case)}, gone without the person "
            f"{len(lost_by_us)}, in two folders {both}"
        ),
        lost_override=len(without_case) + len(lost_by_us),
    )


def summary(rig: Rig, *, lost_override: int | None = None, **columns: str) -> dict[str, str]:
    """The counts every scenario reports, from the database and the SMTP server."""
    inbound = rig.inbound()
    lost = sum(m not in inbound for m in rig.ids) if lost_override is None else lost_override
    unsent = len(rig.queued() - rig.arrivals.accepted())
    return {
        "messages": str(len(rig.ids)),
        "lost": str(lost),
        "doubled": str(sum(c - 1 for c in inbound.values() if c > 1)),
        "acks twice": str(rig.arrivals.twice()) + (f" ({unsent} never sent)" if unsent else ""),
        **columns,
    }


COLUMNS = [
    ("scenario", "scenario"),
    ("database", "database"),
    ("messages", "messages"),
    ("kills", "kills"),
    ("takeovers", "takeovers"),
    ("lost", "lost"),
    ("doubled", "doubled cases"),
    ("acks twice", "acks accepted twice"),
    ("take_over", "take over (max / median)"),
    ("recover", "acks recovered (max)"),
    ("other", "other"),
]


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "mailbridge", "cli")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: all)"
    )
    ap.add_argument(
        "--database",
        nargs="+",
        choices=["sqlite", "postgres"],
        help="default: takeover on both, the others on SQLite",
    )
    ap.add_argument("-n", type=int, default=2000, help="backlog of enquiries (default 2,000)")
    ap.add_argument("-k", type=int, default=5, help="kills, or restart rounds (default 5)")
    ap.add_argument("--daemons", type=int, help="takeover: daemons (default 2 SQLite, 3 PG)")
    ap.add_argument("--per-round", type=int, default=100, help="restart: enquiries per round")
    ap.add_argument(
        "--smtp-delay", type=float, default=0.03, help="restart: seconds per message at SMTP"
    )
    ap.add_argument(
        "--ack-wait",
        type=float,
        default=360,
        help="how long to wait for acknowledgements after the last kill (default 360 s: "
        "longer than [smtp] lease_seconds)",
    )
    ap.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server to create scratch databases on",
    )
    args = ap.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    if unknown := set(chosen) - set(SCENARIOS):
        ap.error(f"no scenario {', '.join(sorted(unknown))}: choose from {', '.join(SCENARIOS)}")
    subprocess.run(  # byte-compiled, as an installed package is: every daemon starts alike
        [sys.executable, "-m", "compileall", "-q", "mailbridge", "cli"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    cpu = platform.processor() or platform.machine()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cpu}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, commit {commit()}",
        flush=True,
    )
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS), flush=True)
    with running_dovecot() as dovecot:
        for scenario in chosen:
            for database in args.database or (
                ["sqlite", "postgres"] if scenario == "takeover" else ["sqlite"]
            ):
                delay = args.smtp_delay if scenario == "restart" else 0.0
                with rig(dovecot, database, args.pg_admin_url, delay) as r:
                    if scenario == "takeover":
                        daemons = args.daemons or (2 if database == "sqlite" else 3)
                        row = takeover(r, args.n, daemons, args.k, args.ack_wait)
                    elif scenario == "restart":
                        row = restart(r, args.per_round, args.k, args.ack_wait)
                    else:
                        row = person(r, args.n, args.ack_wait)
                row["database"] = "PostgreSQL" if database == "postgres" else "SQLite"
                print("| " + " | ".join(row.get(key, "-") for key, _ in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()
