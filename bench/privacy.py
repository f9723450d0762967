"""Privacy benchmark (#14): retention, erasure on request, subject access and the audit of a
read, on N completed cases with their mail (20,000 by default).

Generates two years of completed cases (bench/console.py's members, officers, service areas
and districts) with what the pipeline keeps of each: the enquiry (a few KB of text, its raw
email in the blob store), the officer's response (raw email too), the acknowledgement sent
(an outbox row with its bytes and the outbound message that mirrors it), three events and,
for about one case in three, an attachment in the blob store (some shared between cases: a
council leaflet sent on again). One councillor has `--erase-cases` cases on top of the N,
another `--sar-cases` of them. Then, in this order, it times:

* the audit on a read: `privacy.access.show_case` (`case show`) against the read model
  `console.views.case_detail` alone, each in its own session, median of `--runs` runs;
* a subject access export (`privacy.subject_access.export`) for the second councillor, then
  one for a resident's name (a text search of every case and email), each in a fresh
  process so its peak RSS is its own;
* `privacy.requests.erase_person` for the first councillor, `--erase-cases`;
* `privacy.retention.run` two years and a month after the newest case, when every one of the
  N cases is due, then again with nothing left to do (the plan alone).

Never pass/fail: it prints figures, with the machine and the date. The default run takes
~3.5 minutes on SQLite and ~6 on PostgreSQL on a 2-core VM (2026-12): the first retention
run over 20,000 cases is most of it; `-n 2000` takes under a minute.

    .venv/bin/python bench/privacy.py                        # 20,000 cases, SQLite
    .venv/bin/python bench/privacy.py --database postgres    # a scratch PostgreSQL database
    .venv/bin/python bench/privacy.py -n 2000 --runs 50      # a quick look
    .venv/bin/python bench/privacy.py --profile run.prof     # cProfile of the first retention run
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import multiprocessing
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlmodel import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from console import AREAS, DISTRICTS, FIRST, LAST, ROADS, people, scratch_database  # noqa: E402

from mailbridge.config import Config  # noqa: E402
from mailbridge.deadlines.calendar import WorkingCalendar  # noqa: E402
from mailbridge.privacy.audit import Actor, Channel  # noqa: E402
from mailbridge.services import Services  # noqa: E402
from mailbridge.store.migrate import ensure_database  # noqa: E402
from mailbridge.store.models import (  # noqa: E402
    Attachment,
    Case,
    CaseOfficer,
    Event,
    Message,
    OutboxMessage,
)

CHUNK = 2000  # cases per insert batch (and per blob store batch)
COUNCIL = "enquiries@example.gov.uk"
ACTOR = Actor(name="dpo@example.gov.uk", channel=Channel.CLI, origin="bench")
SENTENCES = [
    "The pavement outside number {n} has been broken since the winter and my neighbour fell.",
    "I reported this twice online and nobody has come to look at it or replied to me.",
    "The bins on {road} were missed again this week, the third time in a month.",
    "Children walk this way to school every morning and the lighting is out again.",
    "Could the council please tell me when the repair is planned and who is responsible.",
    "My mother is 84 and cannot get her wheelchair past the cars parked on the pavement.",
    "Water pours off the field into the road whenever it rains and freezes overnight.",
    "The bus stopped running through the village in September without any notice.",
    "I have attached a photograph taken this morning showing how bad it has become.",
    "We were told the work would be done in the spring but nothing has happened since.",
]
LEAFLETS = 40  # attachments shared between cases (the same file sent on again)


def paragraphs(rng: random.Random, count: int) -> list[str]:
    """A pool of enquiry paragraphs (~400 bytes each), to draw a few KB of text from."""
    pool = []
    for _ in range(count):
        lines = rng.sample(SENTENCES, 5)
        road = rng.choice(ROADS)
        pool.append(" ".join(s.format(n=rng.randint(1, 200), road=road) for s in lines))
    return pool


def raw_email(sender: str, to: str, subject: str, message_id: str, body: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def generate(
    url: str, services: Services, n: int, erase_cases: int, sar_cases: int, attachment_kb: int
) -> dict[str, Any]:
    """Insert N + erase_cases completed cases and their mail; return who the targets are."""
    rng = random.Random(14)
    cal = WorkingCalendar()
    engine = ensure_database(url)
    pool = paragraphs(rng, 400)
    leaflets = [rng.randbytes(attachment_kb * 1024) for _ in range(LEAFLETS)]
    due_cache: dict[tuple[date, int], date] = {}

    def due(day: date, days: int) -> date:
        if (day, days) not in due_cache:
            due_cache[(day, days)] = cal.add_working_days(day, days)
        return due_cache[(day, days)]

    started = time.perf_counter()
    total = n + erase_cases
    counts = {"messages": 0, "attachments": 0, "blobs": 0, "blob_bytes": 0}
    with engine.begin() as conn:
        members, officers = people(conn, rng, 300, 200)
        emails = dict(conn.execute(text("SELECT id, email FROM person")).all())
        names = dict(conn.execute(text("SELECT id, name FROM person")).all())
        leaving, asked = members[0], members[1]
        owners = [leaving] * erase_cases + [asked] * sar_cases
        owners += [rng.choice(members[2:]) for _ in range(total - len(owners))]
        rng.shuffle(owners)
        by_area: dict[str, list[int]] = {}
        for k, oid in enumerate(officers):
            by_area.setdefault(AREAS[k % len(AREAS)][0], []).append(oid)
        span = 730 * 24 * 3600
        end = datetime.now(UTC) - timedelta(days=21)  # every case completed by now
        moments = sorted(rng.randrange(span) for _ in range(total))
        seqs: dict[int, int] = {}
        rows: dict[type, list[dict[str, Any]]] = {}
        blobs: list[bytes] = []
        message_id = 0

        def flush() -> None:
            if blobs:
                services.blobs.put_many(blobs)
                blobs.clear()
            for model in (Case, CaseOfficer, Message, Attachment, OutboxMessage, Event):
                batch = rows.get(model)
                if batch:  # one statement a table: every row with every column
                    columns = {key for row in batch for key in row}
                    conn.execute(insert(model), [dict.fromkeys(columns) | r for r in batch])
            rows.clear()

        def add(model: type, **values: Any) -> None:
            rows.setdefault(model, []).append(values)

        def blob(data: bytes) -> str:
            blobs.append(data)
            counts["blob_bytes"] += len(data)
            return hashlib.sha256(data).hexdigest()

        for case_id, (offset, member) in enumerate(zip(moments, owners, strict=True), start=1):
            received = end - timedelta(seconds=span - offset)
            local = cal.local_date(received)
            area, directorate, types = rng.choice(AREAS)
            lead = rng.choice(by_area[area])
            done = received + timedelta(days=rng.randint(1, 20))
            seqs[local.year] = seqs.get(local.year, 0) + 1
            reference = f"MQ-{local.year}-{seqs[local.year]:05d}"
            road = rng.choice(ROADS)
            etype = rng.choice(types)
            subject = f"{etype} on {road}"
            resident = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            body = (
                f"On behalf of my resident {resident}, {rng.randint(1, 200)} {road}:\n\n"
                + "\n\n".join(rng.choices(pool, k=rng.randint(4, 12)))
            )
            member_email, officer_email = emails[member], emails[lead]
            add(
                Case,
                id=case_id,
                reference=reference,
                prefix="MQ",
                year=local.year,
                seq=seqs[local.year],
                subject=subject,
                body_text=body,
                status="completed",
                member_id=member,
                submitter_id=member,
                lead_officer_id=lead,
                service_area=area,
                directorate=directorate,
                enquiry_type=etype,
                district=rng.choice(DISTRICTS),
                received_at=received,
                acknowledge_due=due(local, 2),
                response_due=due(local, 10),
                acknowledged_at=received + timedelta(minutes=2),
                assigned_at=received + timedelta(hours=3),
                completed_at=done,
                first_response_at=done,
                last_response_at=done,
                preferred_contact="email",
                created_at=received,
                updated_at=done,
            )
            add(CaseOfficer, case_id=case_id, person_id=lead, role="lead")
            # The enquiry, its raw email, perhaps an attachment.
            enquiry_id = f"<enquiry.{case_id}@example.gov.uk>"
            raw = raw_email(member_email, COUNCIL, subject, enquiry_id, body)
            message_id += 1
            add(
                Message,
                id=message_id,
                direction="in",
                dedupe_key=enquiry_id,
                message_id=enquiry_id,
                case_id=case_id,
                disposition="case",
                sender=member_email,
                sender_name=names[member],
                recipients=COUNCIL,
                subject=subject,
                received_at=received,
                raw_sha256=blob(raw),
                raw_size=len(raw),
                body_text=body,
                role="enquiry",
                created_at=received,
            )
            if rng.random() < 1 / 3:
                shared = rng.random() < 0.2
                data = (
                    rng.choice(leaflets)
                    if shared
                    else rng.randbytes(
                        rng.randint(attachment_kb // 4, attachment_kb * 7 // 4) * 1024
                    )
                )
                add(
                    Attachment,
                    message_id=message_id,
                    case_id=case_id,
                    filename="leaflet.pdf" if shared else f"photo-{road.replace(' ', '-')}.jpg",
                    content_type="application/pdf" if shared else "image/jpeg",
                    size=len(data),
                    sha256=blob(data),
                    scan_result="clean",
                )
                counts["attachments"] += 1
            # The acknowledgement: the outbox row with its bytes and the message mirroring it.
            ack_id = f"<ack.{case_id}@example.gov.uk>"
            ack_subject = f"Re: {subject} [{reference}]"
            ack_text = (
                f"Dear {names[member]},\n\nThank you for your enquiry about {subject.lower()}. "
                f"It is {reference}; we will reply by {due(local, 10):%d %B %Y}.\n\n"
                "Member Enquiries Team\n"
            )
            ack = raw_email(COUNCIL, member_email, ack_subject, ack_id, ack_text + body[:1500])
            sent = received + timedelta(minutes=2)
            add(
                OutboxMessage,
                id=case_id,
                message_id=ack_id,
                case_id=case_id,
                case_reference=reference,
                kind="acknowledgement",
                sender=COUNCIL,
                recipients=member_email,
                subject=ack_subject,
                raw=ack,
                status="sent",
                attempts=1,
                next_attempt_at=received,
                created_at=received,
                sent_at=sent,
            )
            message_id += 1
            add(
                Message,
                id=message_id,
                direction="out",
                message_id=ack_id,
                case_id=case_id,
                sender=COUNCIL,
                recipients=member_email,
                subject=ack_subject,
                received_at=sent,
                raw_size=len(ack),
                body_text=ack_text,
                in_reply_to=enquiry_id,
                created_at=sent,
            )
            # The officer's response, its raw email.
            reply = (
                f"Dear Councillor,\n\nThe team visited {road} and the work on "
                f"{etype.lower()} is booked. I have written to {resident} too.\n\n"
                f"{names[lead]}, {area}\n"
            )
            response_id = f"<response.{case_id}@example.gov.uk>"
            quoted = reply + "\n> " + body[:800].replace("\n", "\n> ")
            raw = raw_email(officer_email, COUNCIL, ack_subject, response_id, quoted)
            message_id += 1
            add(
                Message,
                id=message_id,
                direction="in",
                dedupe_key=response_id,
                message_id=response_id,
                case_id=case_id,
                disposition="case",
                sender=officer_email,
                sender_name=names[lead],
                recipients=COUNCIL,
                subject=ack_subject,
                received_at=done,
                raw_sha256=blob(raw),
                raw_size=len(raw),
                body_text=quoted,
                role="response",
                reply_text=reply,
                in_reply_to=ack_id,
                created_at=done,
            )
            for at, kind, detail in (
                (received, "created", f"enquiry from {member_email}: {subject}"),
                (received + timedelta(hours=3), "assigned", f"lead officer {names[lead]}"),
                (done, "completed", f"response from {officer_email}"),
            ):
                add(Event, case_id=case_id, at=at, kind=kind, actor="system", detail=detail)
            counts["messages"] += 3
            if case_id % CHUNK == 0:
                flush()
        flush()
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in (t.__tablename__ for t in (Case, Message, OutboxMessage)):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                    f'(SELECT max(id) FROM "{table}"))'
                )
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    with engine.connect() as conn:
        sample = conn.execute(
            select(Case.reference).where(Case.member_id == asked).order_by(Case.id.desc())
        ).scalar()
    engine.dispose()
    with services.blobs._lock:
        counts["blobs"] = (
            services.blobs._connection().execute("SELECT count(*) FROM blob").fetchone()[0]
        )
    seconds = time.perf_counter() - started
    print(
        f"generated {total:,} cases ({counts['messages']:,} emails, {counts['attachments']:,} "
        f"attachments, {total:,} sent copies; {counts['blobs']:,} blobs, "
        f"{counts['blob_bytes'] / 1e6:,.0f} MB written) in {seconds:.1f} s",
        flush=True,
    )
    return {
        "leaving": emails[leaving],
        "asked": emails[asked],
        "case": sample,
        "latest": end + timedelta(days=20),
    }


# --- measuring ------------------------------------------------------------------------------


def sizes(services: Services) -> tuple[int, int]:
    """The case database's size (SQLite: its files; PostgreSQL: pg_database_size) and the
    blob store's files, in bytes."""
    engine = services.engine
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        db = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        with engine.connect() as conn:
            db = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    store = services.blobs.file
    blob_bytes = sum(p.stat().st_size for p in store.parent.glob(store.name + "*"))
    return int(db), blob_bytes


def build_services(url: str, data_dir: Path) -> Services:
    from mailbridge.store.db import make_engine

    config = Config.model_validate(
        {"storage": {"data_dir": str(data_dir)}, "database": {"url": url}}
    )
    return Services.build(config, make_engine(url))


def audit_cost(services: Services, reference: str, runs: int) -> tuple[float, float]:
    """Median ms of `case show` with its audit record, and of the read model alone."""
    from mailbridge.console import views
    from mailbridge.privacy import access
    from mailbridge.store.models import utcnow

    cal = services.calendar

    def plain() -> None:
        with Session(services.engine) as session:
            views.case_detail(session, reference, cal, cal.local_date(utcnow()))

    def recorded() -> None:
        access.show_case(services.engine, reference, cal, ACTOR)

    def median(fn: Any) -> float:
        fn()
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
        return statistics.median(samples)

    return median(recorded), median(plain)


def peak_rss_kb() -> int:
    """This process's peak RSS. Linux's getrusage keeps, across the exec that starts a
    spawned process, the high-water mark of the parent it was forked from (here the
    generator's); /proc/self/status's VmHWM is this program's own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def sar_child(url: str, data_dir: str, email: str | None, name: str | None, out: str) -> dict:
    """One subject access export in a fresh process: its time, the zip, its own peak RSS."""
    from mailbridge.privacy import subject_access

    services = build_services(url, Path(data_dir))
    search = subject_access.Search.of(email, name)
    base = peak_rss_kb()
    t = time.perf_counter()
    summary = subject_access.export(services, search, Path(out), actor=ACTOR)
    seconds = time.perf_counter() - t
    peak = peak_rss_kb()
    services.engine.dispose()
    return {
        "seconds": seconds,
        "cases": len(summary.references),
        "zip": Path(out).stat().st_size,
        "base_mb": base / 1024,
        "peak_mb": peak / 1024,
    }


def sar(url: str, data_dir: Path, email: str | None, name: str | None) -> dict:
    out = data_dir.parent / f"sar-{uuid.uuid4().hex[:6]}.zip"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        figures = pool.apply(sar_child, (url, str(data_dir), email, name, str(out)))
    out.unlink()
    return figures


def measure(
    url: str, data_dir: Path, targets: dict[str, Any], runs: int, profile: str | None
) -> list[str]:
    from mailbridge.privacy import requests, retention

    lines: list[str] = []
    services = build_services(url, data_dir)

    with_audit, without = audit_cost(services, targets["case"], runs)
    lines.append(
        f"case show ({targets['case']}): with its audit record {with_audit:.2f} ms, the read "
        f"model alone {without:.2f} ms: the record costs {with_audit - without:.2f} ms "
        f"(median of {runs})"
    )

    name = "Margaret Owen"
    for label, email, who in (
        ("by address", targets["asked"], None),
        ("by name", None, name),
    ):
        f = sar(url, data_dir, email, who)
        lines.append(
            f"subject access export {label} ({email or repr(who)}): {f['cases']:,} cases in "
            f"{f['seconds']:.1f} s, zip {f['zip'] / 1e6:.1f} MB, peak RSS {f['peak_mb']:.0f} MB "
            f"(the process after its imports: {f['base_mb']:.0f} MB)"
        )

    t = time.perf_counter()
    outcome = requests.erase_person(
        services,
        targets["leaving"],
        "DPA-2026-014",
        successor=None,
        erase_cases=True,
        actor=ACTOR,
        now=datetime.now(UTC),
        dry_run=False,
    )
    seconds = time.perf_counter() - t
    erased = sum(1 for line in outcome.done if "content erased (" in line)
    lines.append(
        f"erase person --erase-cases ({targets['leaving']}): {erased:,} cases in {seconds:.1f} s"
        f" ({outcome.done[-1]})"
    )

    now = targets["latest"] + timedelta(days=2 * 365 + 31)
    db_before, blobs_before = sizes(services)
    profiler = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = retention.run(services, now, dry_run=False, actor=ACTOR)
    seconds = time.perf_counter() - t
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    db_after, blobs_after = sizes(services)
    cases = len(report.cases)
    lines.append(
        f"retention run, first: {cases:,} cases' content erased in {seconds:.1f} s "
        f"({cases / seconds:,.0f} cases/s), {report.blobs_removed:,} blobs removed, "
        f"{report.sent_copies:,} other sent copies"
    )
    lines.append(
        f"  database {db_before / 1e6:,.0f} MB -> {db_after / 1e6:,.0f} MB, blob store "
        f"{blobs_before / 1e6:,.0f} MB -> {blobs_after / 1e6:,.0f} MB"
    )
    t = time.perf_counter()
    again = retention.run(services, now + timedelta(days=1), dry_run=False, actor=ACTOR)
    seconds = time.perf_counter() - t
    lines.append(
        f"retention run, the next day (nothing due: {len(again.cases)} cases): {seconds:.2f} s"
    )
    services.engine.dispose()
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 1024 / 1024:.0f} GB RAM"
    except OSError:
        ram = "RAM unknown"
    return f"{platform.node()}, {os.cpu_count()} CPUs ({cpu}), {ram}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="cases (default 20,000)")
    ap.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--runs", type=int, default=200, help="runs of `case show` (median)")
    ap.add_argument(
        "--erase-cases", type=int, default=300, help="cases of the councillor erased (300)"
    )
    ap.add_argument(
        "--sar-cases", type=int, default=300, help="cases of the councillor asking (300)"
    )
    ap.add_argument(
        "--attachment-kb", type=int, default=60, help="an attachment's mean size (60 KB)"
    )
    ap.add_argument("--profile", help="write cProfile output of the first retention run here")
    ap.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server to create a scratch database on",
    )
    args = ap.parse_args()

    started = datetime.now(UTC)
    with (
        tempfile.TemporaryDirectory(prefix="mailbridge-privacy-bench-") as tmp,
        scratch_database(
            args.database, args.pg_admin_url, Path(tmp) / "data" / "mailbridge.db"
        ) as url,
    ):
        data_dir = Path(tmp) / "data"
        services = build_services(url, data_dir)
        targets = generate(
            url, services, args.n, args.erase_cases, args.sar_cases, args.attachment_kb
        )
        services.engine.dispose()
        figures = measure(url, data_dir, targets, args.runs, args.profile)

    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {machine()}, Python {platform.python_version()}, "
        f"{args.database}, {args.n:,} cases (+{args.erase_cases:,} of the councillor erased)"
    )
    for line in figures:
        print(f"  {line}")


if __name__ == "__main__":
    main()
