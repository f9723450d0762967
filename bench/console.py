"""Console benchmark: the coordinator's queries on N realistic cases (100,000 by default).

Generates two years of cases (about 300 members, 200 officers, 12 service areas in five
directorates, eight districts; statuses by age, extensions, additional officers; each
case's opening, assignment, extension and holding reply in its timeline) with bulk Core
inserts, one named member (`BENCH_MEMBER`) with exactly `BENCH_MEMBER_CASES` of them
and the rest shared by the others, and the numbering carried on after them (reference
counters, PostgreSQL's id sequences) so a case opened afterwards gets the next reference
and id; then times, warm, the median of several runs of:

* the dashboard's data (counts by status, overdue, due within 2 working days, newest 15);
* `cases list` with three filters (service area + status + overdue), page and total;
* `cases list` unfiltered, first page, and a `--search` over subjects and enquiry text;
* the scrutiny report over a year: live, as just after the upgrade to schema 0015, then
  on the past months counted ahead (and how long counting them takes), first in a new
  process and then asked again, then with last month changed since;
* the clock: the first tick after the upgrade to schema 0013 (every running case due at
  once: the whole backlog planned, mailed and recorded) and the service's tick in the
  steady state, the one it runs every `tick_seconds`.

Never pass/fail: it prints figures.

    .venv/bin/python bench/console.py                  # 100,000 cases, SQLite
    .venv/bin/python bench/console.py --database postgres
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, delete, func, insert, select, text, update
from sqlmodel import Session, SQLModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbridge.console import dashboard, filters  # noqa: E402
from mailbridge.deadlines.calendar import WorkingCalendar  # noqa: E402
from mailbridge.store import tally  # noqa: E402
from mailbridge.store.db import refresh_statistics  # noqa: E402
from mailbridge.store.migrate import ensure_database  # noqa: E402
from mailbridge.store.models import (  # noqa: E402
    Case,
    CaseOfficer,
    Event,
    Person,
    PersonAddress,
    ReferenceCounter,
)

FIRST = ["Jane", "Raj", "Margaret", "David", "Helen", "Tom", "Aisha", "Gareth", "Sue", "Li"]
LAST = ["Smith", "Patel", "Owen", "Okafor", "Jones", "Baker", "Rahman", "Lewis", "Wood", "Chen"]
DIRECTORATES = {
    "Environment and Transport": [
        ("Highways", ["Pothole", "Street lighting", "Drainage", "Pavement"]),
        ("Waste", ["Missed collection", "Fly-tipping"]),
        ("Transport", ["Bus service", "Parking"]),
    ],
    "Children's Services": [
        ("School Transport", ["Eligibility", "Route"]),
        ("Admissions", ["School place"]),
        ("SEND", ["EHCP", "Assessment"]),
    ],
    "Adults and Health": [
        ("Adult Social Care", ["Care review", "Carer support"]),
        ("Public Health", ["Health concern"]),
    ],
    "Corporate Resources": [("Council Tax", ["Bill query"]), ("Libraries", ["Opening hours"])],
    "Chief Executive's": [("Planning", ["Application"]), ("Trading Standards", ["Scam"])],
}
AREAS = [(area, d, types) for d, areas in DIRECTORATES.items() for area, types in areas]
DISTRICTS = [
    "Blaby",
    "Charnwood",
    "Harborough",
    "Hinckley and Bosworth",
    "Melton",
    "North West Leicestershire",
    "Oadby and Wigston",
    "Rutland",
]
ROADS = ["Mill Lane", "Church Street", "Station Road", "High Street", "London Road"]
WORDS = [
    "resident",
    "asked",
    "again",
    "about",
    "the",
    "problem",
    "near",
    "the",
    "school",
    "and",
    "the",
    "shops",
]
CHUNK = 5000
# The member "My enquiries" is timed for (bench/web.py): issue #17's figure is a member with
# 2,000 cases, whatever the total (an even share would be ~3,300 of 1,000,000).
BENCH_MEMBER = "member000@example.gov.uk"
BENCH_MEMBER_CASES = 2000


def people(conn: Any, rng: random.Random, members: int, officers: int) -> tuple[list, list]:
    """Insert members and officers (with their addresses); return their ids and areas."""
    rows = []
    for i in range(members):
        name = f"Cllr {rng.choice(FIRST)} {rng.choice(LAST)}"
        rows.append(
            {
                "kind": "member",
                "name": name,
                "email": f"member{i:03d}@example.gov.uk",
                "district": DISTRICTS[i % len(DISTRICTS)],
                "active": True,
            }
        )
    for i in range(officers):
        area, directorate, _ = AREAS[i % len(AREAS)]
        rows.append(
            {
                "kind": "officer",
                "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "email": f"officer{i:03d}@example.gov.uk",
                "service_area": area,
                "directorate": directorate,
                "active": True,
            }
        )
    now = datetime.now(UTC)
    blank = {"district": None, "service_area": None, "directorate": None}
    rows = [{**blank, **r, "created_at": now, "updated_at": now} for r in rows]
    conn.execute(insert(Person), rows)
    found = conn.execute(select(Person.id, Person.kind, Person.email)).all()
    conn.execute(
        insert(PersonAddress), [{"email": email, "person_id": pid} for pid, _, email in found]
    )
    member_ids = [pid for pid, kind, _ in found if kind == "member"]
    officer_ids = [pid for pid, kind, _ in found if kind == "officer"]
    return member_ids, officer_ids


def carry_numbering_on(conn: Connection) -> None:
    """Numbering carried on after the generated rows, which are written with their ids and
    references: the reference counters at the highest numbers, and on PostgreSQL each id
    sequence at its table's highest id (SQLite takes the next id from the table itself)."""
    if conn.dialect.name == "postgresql":
        for table in SQLModel.metadata.sorted_tables:
            if "id" in table.c and table.c.id.autoincrement in (True, "auto"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                        f'coalesce(max(id), 0) + 1, false) FROM "{table.name}"'
                    )
                )
    conn.execute(delete(ReferenceCounter))
    highest = conn.execute(
        select(Case.prefix, Case.year, func.max(Case.seq)).group_by(Case.prefix, Case.year)
    ).all()
    if highest:
        conn.execute(
            insert(ReferenceCounter),
            [{"prefix": prefix, "year": year, "last": last} for prefix, year, last in highest],
        )


def generate(url: str, n: int) -> None:
    rng = random.Random(11)
    cal = WorkingCalendar()
    today = cal.local_date(datetime.now(UTC))
    engine = ensure_database(url)
    due_cache: dict[tuple[date, int], date] = {}

    def due(day: date, days: int) -> date:
        key = (day, days)
        if key not in due_cache:
            due_cache[key] = cal.add_working_days(day, days)
        return due_cache[key]

    started = time.perf_counter()
    with engine.begin() as conn:
        members, officers = people(conn, rng, 300, 200)
        bench = conn.execute(
            select(PersonAddress.person_id).where(PersonAddress.email == BENCH_MEMBER)
        ).scalar_one()
        others = [m for m in members if m != bench]
        theirs = set(rng.sample(range(n), min(BENCH_MEMBER_CASES, n)))
        officers_by_area: dict[str, list[int]] = {}
        for k, oid in enumerate(officers):
            officers_by_area.setdefault(AREAS[k % len(AREAS)][0], []).append(oid)
        span = 730 * 24 * 3600
        moments = sorted(rng.randrange(span) for _ in range(n))
        start = datetime.now(UTC) - timedelta(seconds=span)
        seqs: dict[int, int] = {}
        cases: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        chance = random.Random(12)  # the events' own draws: the cases stay as they were
        case_id = conn.execute(select(Case.id).order_by(Case.id.desc())).scalar() or 0

        def flush() -> None:
            if cases:
                conn.execute(insert(Case), cases)
                cases.clear()
            if links:
                conn.execute(insert(CaseOfficer), links)
                links.clear()
            if events:
                conn.execute(insert(Event), events)
                events.clear()

        for number, offset in enumerate(moments):
            created = start + timedelta(seconds=offset)
            local = cal.local_date(created)
            age = (today - local).days
            area, directorate, types = rng.choice(AREAS)
            member = bench if number in theirs else rng.choice(others)
            roll = rng.random()
            if age > 40:
                status = "completed" if roll < 0.93 else "closed" if roll < 0.96 else "in_progress"
            elif age > 10:
                status = "completed" if roll < 0.6 else "in_progress" if roll < 0.95 else "new"
            else:
                status = "new" if roll < 0.5 else "in_progress" if roll < 0.85 else "completed"
            response_due = due(local, 10)
            extended = due(response_due, 5) if rng.random() < 0.05 else None
            lead = rng.choice(officers_by_area[area]) if status != "new" else None
            case_id += 1
            seqs[local.year] = seqs.get(local.year, 0) + 1
            road = rng.choice(ROADS)
            etype = rng.choice(types)
            done = (
                created + timedelta(days=rng.randint(1, 20))
                if status in ("completed", "closed")
                else None
            )
            cases.append(
                {
                    "id": case_id,
                    "reference": f"MQ-{local.year}-{seqs[local.year]:05d}",
                    "prefix": "MQ",
                    "year": local.year,
                    "seq": seqs[local.year],
                    "subject": f"{etype} on {road}",
                    "body_text": " ".join(rng.choices(WORDS, k=40)) + f" {road}.",
                    "status": status,
                    "member_id": member,
                    "submitter_id": member,
                    "lead_officer_id": lead,
                    "service_area": area,
                    "directorate": directorate,
                    "enquiry_type": etype,
                    "district": rng.choice(DISTRICTS),
                    "received_at": created,
                    "acknowledge_due": due(local, 2),
                    "response_due": response_due,
                    "acknowledged_at": created + timedelta(hours=2),
                    "completed_at": done,
                    "first_response_at": done,
                    "extended_due": extended,
                    "chase_count": rng.choice((0, 0, 0, 1, 2)),
                    "reopened_count": 0,
                    "preferred_contact": rng.choice(("email", "email", "phone", "letter")),
                    "sensitive": False,
                    "created_at": created,
                    "updated_at": done or created,
                    # As migration 0013 leaves a running case: due now, for the clock to plan.
                    "next_stage_at": created if status in ("new", "in_progress") and lead else None,
                }
            )
            # What the report counts from the timeline, beside its opening and assignment.
            story = ["case_opened"] + ["assigned"] * bool(lead)
            story += ["deadline_extended"] * bool(extended)
            story += ["holding_reply"] * (lead is not None and chance.random() < 0.1)
            events += [{"case_id": case_id, "at": created, "kind": k} for k in story]
            if lead:
                links.append({"case_id": case_id, "person_id": lead, "role": "lead"})
                if rng.random() < 0.1:
                    other = rng.choice(officers)
                    if other != lead:
                        links.append({"case_id": case_id, "person_id": other, "role": "additional"})
            if len(cases) >= CHUNK:
                flush()
        flush()
        carry_numbering_on(conn)
    tally.fold(engine)  # as the service's tick does: the cases' tally in a row per status
    if url.startswith("postgresql"):  # as a database that has stood a while: autovacuum
        # has been by and the load's pages are written out, not flushed during the timings
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
    else:  # the statistics the service gathers each day (store/db.py)
        refresh_statistics(engine)
    engine.dispose()
    print(f"generated {n:,} cases in {time.perf_counter() - started:.1f} s")


def timed(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm: caches, prepared plans, the calendar's holidays
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def schedule_ticks(
    engine: Any, cal: WorkingCalendar, today: date, runs: int
) -> list[tuple[str, float | None, str]]:
    """The clock on the next working morning. The day's digests go in a tick before sending
    hours (at 08:45; on a Monday the week's member digests and management summaries too).
    At 10:00 the first tick after the upgrade: migration 0013 marked every running case due,
    so each is planned, the latest stage of each mailed and the earlier ones recorded as
    skipped, all at once (no limit, as `schedule run-due` does; the service's tick takes
    TICK_LIMIT mails a minute). Then the service's tick in the steady state, a minute later:
    what it costs every `tick_seconds`."""
    from mailbridge.config import Config
    from mailbridge.deadlines import run
    from mailbridge.service.daemon import TICK_LIMIT
    from mailbridge.services import Services

    slug = {name: name.split()[0].lower().strip("'s") for name in DIRECTORATES}
    config = Config.model_validate(
        {
            "service_areas": [
                {"name": a, "directorate": d, "escalation_contact": f"{a[:4].lower()}@x.gov.uk"}
                for a, d, _ in AREAS
            ],
            "directorates": [
                {"name": d, "head_email": f"head.{slug[d]}@example.gov.uk"} for d in DIRECTORATES
            ],
            "coordinators": [{"name": "Member Support", "email": "support@example.gov.uk"}],
        }
    )
    services = Services.build(config, engine)
    day = cal.add_working_days(today, 1)
    now = datetime(day.year, day.month, day.day, 10, 0, tzinfo=cal.zone).astimezone(UTC)
    with Session(engine) as session:
        running = session.exec(
            select(func.count()).select_from(Case).where(Case.next_stage_at.is_not(None))  # type: ignore[union-attr]
        ).scalar_one()
    # The morning's digests go before sending hours (from 08:00), in a tick of their own.
    early = datetime(day.year, day.month, day.day, 8, 45, tzinfo=cal.zone).astimezone(UTC)
    started = time.perf_counter()
    digests = run.run_due(services, early)
    digests_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    first = run.run_due(services, now)
    first_ms = (time.perf_counter() - started) * 1000
    later = now + timedelta(minutes=1)
    return [
        (
            f"schedule: the digests' tick, {day:%A} 08:45",
            digests_ms,
            f"{digests.queued} digests queued (each week's member digests as one)",
        ),
        (
            "schedule: first tick after the upgrade (the whole backlog)",
            first_ms,
            f"{running:,} running cases: {first.queued:,} reminders and escalations "
            f"queued, {len(first.skipped):,} stale stages recorded",
        ),
        (
            "schedule: the service's tick in the steady state",
            timed(lambda: run.run_due(services, later, limit=TICK_LIMIT), runs),
            "",
        ),
    ]


def year_report(
    engine: Any, session: Session, cal: WorkingCalendar, today: date, runs: int
) -> list[tuple[str, float | None, str]]:
    """The scrutiny report over the year to today: first as it stands after the upgrade to
    schema 0015 (no month counted yet: every case counted live), then once the service's
    ticks have counted the past months (console/report_months.py; timed here all at once,
    as the first ticks after the upgrade do it a couple of seconds at a time), then with a
    case of last month changed since (that month counted live until the next tick)."""
    from mailbridge.console import report_months, reports

    start = today - timedelta(days=365)

    def report() -> None:
        session.rollback()  # a fresh snapshot each time, as each request has
        reports.build_report(session, cal, start, today, today=today)

    out: list[tuple[str, float | None, str]] = [
        ("report over a year, no month counted ahead (live)", timed(report, 1), "")
    ]
    started = time.perf_counter()
    months = report_months.refresh(engine, cal, today, seconds=float("inf"))
    out.append(
        (
            "report: counting the past months ahead, all at once",
            (time.perf_counter() - started) * 1000,
            f"{len(months)} months",
        )
    )
    report_months.forget()
    started = time.perf_counter()
    report()
    out.append(
        (
            "report over a year, the first in a process",
            (time.perf_counter() - started) * 1000,
            "the past months counted ahead; read and added up",
        )
    )
    out.append(("report over a year", timed(report, runs), "asked again (as the console is)"))
    last_month = report_months.month_start(today) - timedelta(days=1)
    lo = datetime.combine(last_month.replace(day=10), datetime.min.time(), tzinfo=UTC)
    c = Case.__table__.c  # type: ignore[attr-defined]
    first = select(func.min(c.id)).where(c.received_at >= lo).scalar_subquery()
    with engine.begin() as conn:
        conn.execute(update(Case).where(c.id == first).values(chase_count=c.chase_count + 1))
    out.append(
        (
            "report over a year, last month changed since counted",
            timed(report, runs),
            f"{last_month:%B} counted live",
        )
    )
    report_months.refresh(engine, cal, today)
    return out


def measure(url: str, runs: int) -> list[tuple[str, float | None, str]]:
    from mailbridge.store.db import make_engine

    engine = make_engine(url)
    cal = WorkingCalendar()
    today = cal.local_date(datetime.now(UTC))
    out: list[tuple[str, float | None, str]] = []
    with Session(engine) as session:

        def board() -> None:
            dashboard.dashboard(session, cal, today)

        def three() -> None:
            f = filters.CaseFilter(service_area="Highways", status="in_progress", overdue=True)
            filters.list_cases(session, f, cal, today)
            filters.count_cases(session, f, cal, today)

        def first_page() -> None:
            f = filters.CaseFilter()
            filters.list_cases(session, f, cal, today)
            filters.count_cases(session, f, cal, today)

        def search() -> None:
            f = filters.CaseFilter(search="mill lane", district="Melton")
            filters.list_cases(session, f, cal, today)

        out.append(("dashboard (counts + newest 15)", timed(board, runs), ""))
        out.append(
            (
                "cases list: Highways + in_progress + overdue (page + total)",
                timed(three, runs),
                "",
            )
        )
        out.append(("cases list: no filter (page + total)", timed(first_page, runs), ""))
        out.append(("cases list: --search 'mill lane' --district Melton", timed(search, runs), ""))
        out.extend(year_report(engine, session, cal, today, runs))
        out.extend(schedule_ticks(engine, cal, today, runs))  # last: it queues mail
    engine.dispose()
    return out


@contextmanager
def scratch_database(database: str, pg_admin_url: str, sqlite_file: Path) -> Iterator[str]:
    """The URL of a database of its own for one run: a SQLite file, or a PostgreSQL
    database created on the server and dropped afterwards."""
    if database != "postgres":
        yield f"sqlite:///{sqlite_file}"
        return
    name = f"mb_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg_admin_url.rpartition("/")[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="cases (default 100,000)")
    ap.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per query (median)")
    ap.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server to create a scratch database on",
    )
    args = ap.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="mailbridge-console-bench-") as tmp,
        scratch_database(args.database, args.pg_admin_url, Path(tmp) / "bench.db") as url,
    ):
        generate(url, args.n)
        figures = measure(url, args.runs)

    cpu = platform.processor() or platform.machine()
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {args.database}, {args.n:,} cases, "
        f"median of {args.runs} warm runs"
    )
    for label, ms, note in figures:
        shown = f"{ms:8.1f} ms" if ms is not None else "       -   "
        print(f"  {label:<62} {shown}  {note}")


if __name__ == "__main__":
    main()
