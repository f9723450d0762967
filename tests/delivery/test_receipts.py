"""Delivery receipts: accepted mail is marked sent in bulk, and a dead courier's receipts
are marked before anything it had claimed can be sent again (real database, real aiosmtpd).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from mailbridge.delivery import outbox
from mailbridge.delivery.receipts import Receipts, parse
from mailbridge.store.models import utcnow
from tests.helpers.outbox import queue, received, rows, smtp
from tests.servers.smtp import SmtpServer


def row_ids(engine: Engine) -> list[int]:
    return [r.id for r in rows(engine) if r.id is not None]


def outbox_updates(engine: Engine) -> list[str]:
    """Every UPDATE of the outbox the engine runs from now on (an executemany counts once)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            seen.append(statement)

    return seen


def test_fold_marks_rows_sent_at_the_moment_the_server_took_them(
    engine: Engine, tmp_path: Path
) -> None:
    queue(engine, 3)
    first, second, third = row_ids(engine)
    receipts = Receipts(tmp_path / "receipts")
    took = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    receipts.record(first, took)
    receipts.record(second, took + timedelta(seconds=1))
    assert [r.status for r in rows(engine)] == ["pending"] * 3  # only written to the file

    assert receipts.fold(engine) == 2
    marked = rows(engine)
    assert [r.status for r in marked] == ["sent", "sent", "pending"]
    assert [r.sent_at for r in marked[:2]] == [took, took + timedelta(seconds=1)]
    [file] = (tmp_path / "receipts").glob("*.receipts")
    assert file.read_bytes() == b""  # emptied after the commit
    assert receipts.fold(engine) == 0  # nothing left: no transaction at all

    receipts.record(third, took)  # the file starts again from its beginning
    assert parse(file.read_bytes()) == [(third, took)]
    receipts.fold(engine)
    receipts.close()
    assert list((tmp_path / "receipts").iterdir()) == []  # an empty file goes with its courier


def test_with_receipts_a_round_writes_once_however_many_emails_it_sends(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    queue(engine, 6)
    receipts = Receipts(tmp_path / "receipts")
    updates = outbox_updates(engine)
    assert outbox.deliver_due(engine, smtp(smtp_server), receipts=receipts).sent == 6
    assert len(received(smtp_server)) == 6
    assert len(updates) == 1  # the claim: nothing was written per email
    assert receipts.pending == 6
    assert [r.status for r in rows(engine)] == ["pending"] * 6  # leased, noted in the file

    # The next round's claim marks them, in its own transaction: no second wait for the lock.
    assert outbox.deliver_due(engine, smtp(smtp_server), receipts=receipts).claimed == 0
    assert [r.status for r in rows(engine)] == ["sent"] * 6
    assert all(r.sent_at is not None for r in rows(engine))
    assert len(updates) == 2 and receipts.pending == 0

    queue(engine, 2)
    updates.clear()
    assert outbox.deliver_due(engine, smtp(smtp_server)).sent == 2
    assert len(updates) == 3  # without receipts: the claim and a mark per email


def test_receipts_are_due_after_two_seconds(tmp_path: Path) -> None:
    moment = [100.0]
    receipts = Receipts(tmp_path, clock=lambda: moment[0])
    assert not receipts.due() and receipts.wait_seconds(5.0) == 5.0
    receipts.record(1, utcnow())
    moment[0] += 0.5
    receipts.record(2, utcnow())
    assert not receipts.due() and receipts.wait_seconds(5.0) == 1.5  # the oldest counts
    moment[0] += 1.5
    assert receipts.due() and receipts.wait_seconds(5.0) == 0.0
    receipts.close()


def test_a_dead_couriers_receipts_are_marked_before_its_rows_can_go_again(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    mids = queue(engine, 3)
    first, second, _ = row_ids(engine)
    start = utcnow()
    assert outbox.claim(engine, batch_size=10, lease_seconds=300, now=start) == row_ids(engine)
    dead = Receipts(tmp_path / "receipts")
    dead.record(first, start)
    dead.record(second, start)
    assert dead._fd is not None
    os.close(dead._fd)  # killed: its lock is gone, its file stays

    after_lease = start + timedelta(seconds=301)
    live = Receipts(tmp_path / "receipts")
    report = outbox.deliver_due(engine, smtp(smtp_server), receipts=live, now=lambda: after_lease)
    assert report.sent == 1  # only the row the dead courier never sent
    assert received(smtp_server) == {mids[2]: 1}
    assert [r.status for r in rows(engine)] == ["sent", "sent", "pending"]
    assert [r.sent_at for r in rows(engine)][:2] == [start, start]
    assert list((tmp_path / "receipts").glob("*.receipts")) == [live._path]  # taken, removed
    assert live.fold(engine) == 1
    assert [r.status for r in rows(engine)] == ["sent"] * 3


def test_a_living_couriers_receipts_are_marked_but_its_file_is_left_to_it(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """A courier whose daemon was killed may take a while to mark its receipts; the rows'
    leases can run out meanwhile, and another courier must not send them again."""
    queue(engine, 2)
    first, second = row_ids(engine)
    start = utcnow()
    assert outbox.claim(engine, batch_size=10, lease_seconds=1, now=start) == [first, second]
    alive = Receipts(tmp_path / "receipts")
    alive.record(first, start)  # sent; its courier has not marked it yet, and lives on

    other = Receipts(tmp_path / "receipts")
    later = start + timedelta(seconds=2)  # both leases have run out
    report = outbox.deliver_due(engine, smtp(smtp_server), receipts=other, now=lambda: later)
    assert report.sent == 1  # only the row nobody had sent
    assert rows(engine)[0].status == "sent"
    assert alive._path is not None and alive._path.exists()  # still its courier's
    # Its own receipt and the other courier's (still in that one's file): marking them
    # again changes nothing.
    assert alive.fold(engine) == 2
    assert [r.status for r in rows(engine)] == ["sent", "sent"]
    assert rows(engine)[0].sent_at == start


def test_a_dead_couriers_empty_file_is_removed(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "receipts"
    folder.mkdir()
    (folder / "gone.receipts").write_bytes(b"")
    assert Receipts(folder).fold(engine) == 0
    assert list(folder.iterdir()) == []


def test_marking_the_same_receipts_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    """A crash after the commit but before the file is emptied folds the file again."""
    queue(engine, 1)
    [row_id] = row_ids(engine)
    took = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    line = f"{row_id} {took.isoformat()}\n".encode()
    for name in ("a", "b"):
        (tmp_path / f"{name}.receipts").write_bytes(line)
    assert Receipts(tmp_path).fold(engine) == 2
    [row] = rows(engine)
    assert (row.status, row.sent_at) == ("sent", took)


def test_receipts_are_marked_while_the_courier_waits_out_a_rate_limit(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    queue(engine, 2)
    limiter = outbox.RateLimiter(1, sleep=lambda _seconds: None)
    statuses: list[list[str]] = []
    original = limiter.acquire

    def acquire(stopping=None) -> None:  # type: ignore[no-untyped-def]
        statuses.append([r.status for r in rows(engine)])
        original(lambda: len(statuses) > 1)  # stop instead of waiting a minute

    limiter.acquire = acquire  # type: ignore[method-assign]
    outbox.deliver_due(
        engine, smtp(smtp_server), rate_limit=limiter, receipts=Receipts(tmp_path),
        stopping=lambda: len(statuses) > 1,
    )  # fmt: skip
    # Before the pause for the second email, the first already shows as sent.
    assert statuses == [["pending", "pending"], ["sent", "pending"]]


def test_without_a_writable_receipts_folder_mail_is_marked_one_by_one(
    engine: Engine, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    blocked = tmp_path / "receipts"
    blocked.write_text("a file where the folder should be")
    queue(engine, 2)
    report = outbox.deliver_due(engine, smtp(smtp_server), receipts=Receipts(blocked))
    assert report.sent == 2
    assert [r.status for r in rows(engine)] == ["sent", "sent"]  # nothing waits on a file
    assert len(received(smtp_server)) == 2


TEN = datetime(2026, 11, 25, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"5 2026-11-25T10:00:00+00:00\n", [(5, TEN)]),
        (b"5 2026-11-25T10:00:00+00:00\n6 20", [(5, TEN)]),  # the last line cut by a kill
        (b"5 2026-11-25T10:00:00+00:00\n7", [(5, TEN)]),
        (b"x 2026-11-25T10:00:00+00:00\n\n", []),
        (b"", []),
    ],
)
def test_a_line_cut_short_is_skipped(data: bytes, expected: list[tuple[int, datetime]]) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize(
    ("batch", "per_minute", "lease", "expected"),
    [
        (500, 0, 300, 500),  # no limit: the whole batch
        (500, 30, 300, 75),  # Exchange Online: what goes out in half the lease
        (10, 30, 300, 10),
        (500, 1, 60, 1),  # always at least one
    ],
)
def test_claim_size(batch: int, per_minute: int, lease: float, expected: int) -> None:
    assert outbox.claim_size(batch, per_minute, lease) == expected
