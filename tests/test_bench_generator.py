"""The benchmarks' generated council (bench/console.py `generate`), on each database: a case
opened on it afterwards (the form in bench/web.py) gets the next reference and the next id,
and the bench member has exactly the cases issue #17's "My enquiries" figure is for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select
from sqlmodel import Session

from bench.console import BENCH_MEMBER, BENCH_MEMBER_CASES, generate
from mailbridge.cases.records import allocate_reference
from mailbridge.store.db import make_engine, transaction
from mailbridge.store.models import Case, PersonAddress


def test_generated_cases_number_on_and_the_bench_member_has_their_share(
    migrated_db_url: str,
) -> None:
    generate(migrated_db_url, BENCH_MEMBER_CASES + 700)
    engine = make_engine(migrated_db_url)
    try:
        with Session(engine) as session:
            member = session.execute(
                select(PersonAddress.person_id).where(PersonAddress.email == BENCH_MEMBER)
            ).scalar_one()
            theirs = session.execute(
                select(func.count()).select_from(Case).where(Case.member_id == member)
            ).scalar_one()
            year, last = session.execute(
                select(Case.year, func.max(Case.seq)).group_by(Case.year).order_by(Case.year.desc())
            ).first()  # type: ignore[misc]
            highest = session.execute(select(func.max(Case.id))).scalar_one()
            row: dict[str, Any] = dict(
                session.execute(select(Case.__table__).limit(1)).mappings().one()  # type: ignore[attr-defined]
            )
        assert theirs == BENCH_MEMBER_CASES
        with transaction(engine) as session:
            reference, seq = allocate_reference(session, "MQ", year)
            del row["id"]
            row.update(reference=reference, seq=seq, year=year)
            made = session.execute(
                insert(Case).values(**row).returning(Case.id)  # the id the database gives
            ).scalar_one()
        assert (reference, made) == (f"MQ-{year}-{last + 1:05d}", highest + 1)
    finally:
        engine.dispose()
