"""SQLite's plans for the report's live pass, under the statistics of a million cases.

SQLite's planner knows of a range only that it has one end or two, so left to itself it read
a year of cases by their moment of receipt, and every holding reply and extension of the
database, to find the few thousand cases live on a day (bench/console.py: 400 ms of a
120 ms report). The statistics ANALYZE gathered on the benchmark's million cases are loaded
here into an empty database, so the planner chooses as it would there.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import event

from mailbridge.console.report_counts import LIVE, count
from mailbridge.store.migrate import ensure_database
from tests.console.test_report_reference import CALENDAR

STATISTICS = Path(__file__).parents[1] / "fixtures" / "sqlite_stat1_million_cases.txt"


def test_the_live_pass_reads_the_live_cases_and_their_events_by_index(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'plans.db'}")
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith(("SELECT", "WITH")):  # not the connection's pragmas
            statements.append((statement, parameters))

    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("DELETE FROM sqlite_stat1")
            for line in STATISTICS.read_text().splitlines():
                if line and not line.startswith("#"):
                    table, index, stat = line.split(" ", 2)
                    conn.exec_driver_sql(
                        "INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", (table, index, stat)
                    )
            conn.exec_driver_sql("ANALYZE sqlite_schema")  # read the statistics again
        with engine.connect() as conn:
            event.listen(engine, "before_cursor_execute", seen)
            count(
                conn,
                CALENDAR,
                date(2025, 12, 6),
                date(2026, 11, 30),
                date(2026, 12, 6),
                LIVE,
                date(2026, 12, 6),
            )
            event.remove(engine, "before_cursor_execute", seen)
            plans = [
                " | ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))
                for s, p in statements
            ]
        cases, events = plans
        assert "USING INDEX ix_case_live_until" in cases, cases
        assert "ix_case_received" not in cases, cases
        assert "USING INDEX ix_case_live_until" in events, events
        assert "USING COVERING INDEX ix_event_case_kind (case_id=? AND kind=?)" in events, events
        assert "ix_event_kind " not in events, events
    finally:
        engine.dispose()
