"""References are allocated inside the case transaction: unique and gap-free under load."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlmodel import Session

from mailbridge.cases.records import allocate_reference
from mailbridge.store.db import transaction


def test_concurrent_allocation_is_unique_and_gap_free(engine: Engine) -> None:
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(15):
                with transaction(engine) as session:
                    _, seq = allocate_reference(session, "MQ", 2026)
                with lock:
                    got.append(seq)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == list(range(1, 91))


def test_rolled_back_allocation_leaves_no_gap(engine: Engine) -> None:
    with transaction(engine) as session:
        assert allocate_reference(session, "MQ", 2026) == ("MQ-2026-00001", 1)
    session = Session(engine)
    allocate_reference(session, "MQ", 2026)
    session.rollback()
    session.close()
    with transaction(engine) as session:
        assert allocate_reference(session, "MQ", 2026) == ("MQ-2026-00002", 2)
        assert allocate_reference(session, "MQ", 2027) == ("MQ-2027-00001", 1)
        assert allocate_reference(session, "CE", 2026) == ("CE-2026-00001", 1)
