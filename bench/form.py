"""On-line enquiry form benchmark: the server's time from posting the form with a 5 MB
upload to the acknowledgement queued (the case opened, the raw email and the file stored,
the events and the outbox row committed), on N generated cases (bench/console.py's
generator).

Posts the form `--requests` times through the real application (in process: no network,
no browser), each with a fresh token and 5 MB of different bytes (so content-addressed
storage writes each one), and prints the median and the 95th percentile. Never pass/fail
(the target, issue #17: <= 500 ms).

    .venv/bin/python bench/form.py                       # 100,000 cases, SQLite
    .venv/bin/python bench/form.py -n 1000000 --database postgres
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, text
from sqlmodel import SQLModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from console import generate, scratch_database  # noqa: E402
from web import config_for, percentiles  # noqa: E402

from mailbridge.signin import sessions  # noqa: E402
from mailbridge.store.db import make_engine, transaction  # noqa: E402
from mailbridge.store.models import Case, Person, PersonKind, ReferenceCounter  # noqa: E402

UPLOAD_BYTES = 5 * 1024 * 1024
TOKEN = re.compile(r'name="token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def count_on(engine: Engine) -> None:
    """Numbering carried on after the generated rows (the generator writes cases with their
    ids and references, not the counters): the reference counters at the highest numbers,
    and on PostgreSQL each id sequence at its table's highest id."""
    with transaction(engine) as session:
        if engine.dialect.name == "postgresql":
            for table in SQLModel.metadata.sorted_tables:
                if "id" in table.c and table.c.id.autoincrement in (True, "auto"):
                    session.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                            f'coalesce(max(id), 0) + 1, false) FROM "{table.name}"'
                        )
                    )
        session.execute(delete(ReferenceCounter))
        highest = session.execute(
            select(Case.prefix, Case.year, func.max(Case.seq)).group_by(Case.prefix, Case.year)
        ).all()
        for prefix, year, last in highest:
            session.add(ReferenceCounter(prefix=prefix, year=year, last=last))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="cases (default 100,000)")
    ap.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--requests", type=int, default=20, help="timed submissions")
    ap.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server to create a scratch database on",
    )
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from mailbridge.web.app import create_app
    from mailbridge.web.routing import SESSION_COOKIE

    with (
        tempfile.TemporaryDirectory(prefix="mailbridge-form-bench-") as tmp,
        scratch_database(args.database, args.pg_admin_url, Path(tmp) / "bench.db") as url,
    ):
        generate(url, args.n)
        engine = make_engine(url)
        count_on(engine)
        config = config_for(url, Path(tmp))
        app = create_app(config, engine)
        with transaction(engine) as session:
            member = session.execute(
                select(Person).where(Person.kind == PersonKind.MEMBER, Person.active).limit(1)
            ).scalar_one()
            started = sessions.start(session, member, config.web, method="link",
                                     client="bench", keep=False, now=datetime.now(UTC))  # fmt: skip
        client = TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)
        client.cookies.set(SESSION_COOKIE, started.token)

        def submit() -> float:
            page = client.get("/enquiries/new").text
            [token] = TOKEN.findall(page)
            csrf = CSRF.findall(page)[0]
            fields = {
                "csrf": csrf,
                "token": token,
                "subject": "Pothole outside 14 Mill Lane",
                "details": "Deep pothole by the bus stop; two tyres burst this week.",
            }
            upload = ("survey.pdf", os.urandom(UPLOAD_BYTES), "application/pdf")
            began = time.perf_counter()
            answer = client.post("/enquiries/new", data=fields, files=[("files", upload)])
            took = (time.perf_counter() - began) * 1000
            if answer.status_code != 303:
                raise SystemExit(f"the form answered {answer.status_code}: {answer.text[:300]}")
            return took

        submit()  # warm
        p50, p95 = percentiles([submit() for _ in range(args.requests)])
        client.close()
        engine.dispose()

    cpu = platform.processor() or platform.machine()
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.node()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {args.database}, {args.n:,} cases, "
        f"{args.requests} submissions"
    )
    print(f"  {'form with a 5 MB upload, to ack queued':<40} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
