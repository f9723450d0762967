"""Cases by status without counting them: the sums of `case_tally`, which triggers on
`case` keep (migration 0012), and the daily fold of its rows into one per status."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine, delete, func, insert, select
from sqlmodel import Session

from mailbridge.store.db import transaction
from mailbridge.store.models import CaseTally


def by_status(session: Session) -> dict[str, int]:
    """How many cases each status holds now, as this transaction sees them."""
    rows = session.execute(
        select(CaseTally.status, func.sum(CaseTally.delta)).group_by(CaseTally.status)
    ).all()
    return {status: int(total) for status, total in rows if total}


def fold(engine: Engine) -> int:
    """Replace the rows written so far by one per status (their sums); returns how many
    rows went. The rows are taken and summed by one statement (DELETE ... RETURNING), so a
    change committed meanwhile is neither lost nor counted twice."""
    with transaction(engine) as session:
        conn = session.connection()
        taken = conn.execute(delete(CaseTally).returning(CaseTally.status, CaseTally.delta)).all()
        sums: Counter[str] = Counter()
        for status, delta in taken:
            sums[status] += delta
        kept = [{"status": s, "delta": n} for s, n in sums.items() if n]
        if kept:
            conn.execute(insert(CaseTally), kept)
    return len(taken)
