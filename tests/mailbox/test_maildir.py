"""MaildirSource on a real Maildir++ tree: exact bytes, file times, atomic moves, waiting."""

from __future__ import annotations

import logging
import mailbox
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge.mailbox.base import Destination, InboundMail, batch_sizes
from mailbridge.mailbox.maildir import MaildirSource, maildir_drop
from tests.helpers.mail import large_attachment


def message(n: int) -> bytes:
    # CRLF, 8-bit text, a body line starting "From " and no final newline: kept as is.
    return (
        f"From: cllr{n}@council.example\r\nSubject: Enquiry {n}\r\n"
        f"Message-ID: <m{n}@council.example>\r\n\r\n"
        f"From the ward: caf\u00e9 {n}"
    ).encode()


def fetch_all(source: MaildirSource) -> list[InboundMail]:
    return [m for batch in source.fetch() for m in batch]


def set_mtime(root: Path, key: str, when: datetime) -> None:
    (path,) = [p for sub in ("new", "cur") for p in (root / sub).glob(f"{key}*")]
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize(
    ("waiting", "batch_size", "sizes"),
    [
        (0, 100, []),
        (1, 100, [1]),
        (20, 100, [20]),
        (25, 100, [20, 5]),
        (1000, 100, [20, 40] + [100] * 9 + [40]),
        (60, 100, [20, 40]),
        (3, 2, [2, 1]),  # below 10 nothing is ramped
        (25, 10, [2, 4, 10, 9]),
        (7, 1, [1] * 7),
    ],
)
def test_a_backlog_starts_with_short_batches_then_takes_batch_size(
    waiting: int, batch_size: int, sizes: list[int]
) -> None:
    assert batch_sizes(waiting, batch_size) == sizes
    assert sum(sizes) == waiting and all(0 < s <= batch_size for s in sizes)


def test_the_maildir_fetches_a_backlog_in_those_batches(root: Path) -> None:
    start = datetime(2026, 11, 24, 9, tzinfo=UTC)
    for n in range(30):
        maildir_drop(root, message(n), start + timedelta(seconds=n))
    batches = list(MaildirSource(root, batch_size=10).fetch())
    assert [len(b) for b in batches] == [2, 4, 10, 10, 4]
    assert [m.raw for b in batches for m in b] == [message(n) for n in range(30)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mailbox"


def test_a_missing_maildir_is_created_with_cur_new_tmp(root: Path) -> None:
    source = MaildirSource(root)
    assert fetch_all(source) == []
    assert all((root / sub).is_dir() for sub in ("cur", "new", "tmp"))


def test_fetch_returns_exact_bytes_oldest_first_with_file_time_as_utc(root: Path) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(3)]
    # Out of drop order on purpose: the order is by file time, then name.
    set_mtime(root, keys[0], datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC))
    set_mtime(root, keys[1], datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC))
    set_mtime(root, keys[2], datetime(2026, 3, 2, 11, 0, 0, tzinfo=UTC))
    # A message a mail client already saw lives in cur/ with an info suffix.
    box = mailbox.Maildir(root)
    seen = box.get_message(keys[2])
    seen.set_subdir("cur")
    seen.set_flags("S")
    box[keys[2]] = seen
    set_mtime(root, keys[2], datetime(2026, 3, 2, 11, 0, 0, tzinfo=UTC))

    source = MaildirSource(root, batch_size=2)
    batches = list(source.fetch())

    assert [len(b) for b in batches] == [2, 1]
    mails = [m for b in batches for m in b]
    assert [m.key for m in mails] == [keys[1], keys[0], keys[2]]
    assert mails[0].raw == message(1) and mails[1].raw == message(0)
    assert [m.received_at for m in mails] == [datetime(2026, 3, 2, h) for h in (9, 10, 11)]


def test_move_renames_into_dovecot_style_folders_keeping_bytes(root: Path) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(3)]
    source = MaildirSource(root)
    fetch_all(source)

    source.move(keys[:2], Destination.PROCESSED)
    source.move(keys[2:], Destination.QUARANTINE)

    box = mailbox.Maildir(root, create=False)
    assert len(box) == 0
    assert sorted(box.list_folders()) == ["Processed", "Quarantine"]
    assert (root / ".Processed" / "maildirfolder").exists()  # what Dovecot looks for
    processed = sorted(p.read_bytes() for p in (root / ".Processed" / "cur").iterdir())
    assert processed == sorted([message(0), message(1)])
    (quarantined,) = (root / ".Quarantine" / "cur").iterdir()
    assert quarantined.read_bytes() == message(2)
    assert quarantined.name.startswith(keys[2]) and quarantined.name.endswith(":2,")


def delete(root: Path, key: str) -> None:
    """A person deletes the message (or a second daemon took it)."""
    inbox_file(root, key).unlink()


def take_to_their_folder(root: Path, key: str) -> None:
    """A person files the message in a folder of their own."""
    (root / ".Person" / "cur").mkdir(parents=True, exist_ok=True)
    path = inbox_file(root, key)
    path.rename(root / ".Person" / "cur" / f"{key}:2,S")


def mark_seen(root: Path, key: str) -> None:
    """A person reads it: their mail client renames it into cur/ with the Seen flag."""
    path = inbox_file(root, key)
    path.rename(root / "cur" / f"{key}:2,S")


def inbox_file(root: Path, key: str) -> Path:
    (path,) = [p for sub in ("new", "cur") for p in (root / sub).glob(f"{key}*")]
    return path


def after_the_scan(source: MaildirSource, change: Callable[[], None]) -> None:
    """`change` happens once, right after the source's next look at the inbox: the
    moment between its scan and its reading or renaming a file."""
    scan = source._entries
    pending = [change]

    def scan_then_change() -> list:
        entries = scan()
        while pending:
            pending.pop()()
        return entries

    source._entries = scan_then_change  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("meanwhile", "gone"),
    [(delete, True), (take_to_their_folder, True), (mark_seen, False)],
)
@pytest.mark.parametrize("when", ["before the move", "between the scan and the rename"])
def test_move_returns_the_messages_that_left_the_inbox_and_moves_the_rest(
    root: Path, meanwhile: Callable[[Path, str], None], gone: bool, when: str
) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(3)]
    source = MaildirSource(root)
    fetch_all(source)
    if when == "before the move":
        meanwhile(root, keys[1])
    else:
        after_the_scan(source, lambda: meanwhile(root, keys[1]))

    left = source.move([*keys, "no-such-key"], Destination.PROCESSED)

    assert left == sorted(["no-such-key", *([keys[1]] if gone else [])])
    moved = sorted(p.name.split(":")[0] for p in (root / ".Processed" / "cur").iterdir())
    assert moved == sorted(k for k in keys if not (gone and k == keys[1]))
    assert mailbox.Maildir(root, create=False).keys() == []


def test_a_message_renamed_within_the_inbox_while_fetched_is_still_read(root: Path) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(2)]
    source = MaildirSource(root)
    after_the_scan(source, lambda: mark_seen(root, keys[0]))
    assert [m.raw for m in fetch_all(source)] == [message(0), message(1)]


def test_a_message_deleted_while_fetched_is_skipped_and_logged(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(2)]
    source = MaildirSource(root)
    after_the_scan(source, lambda: delete(root, keys[0]))
    with caplog.at_level(logging.INFO, logger="mailbridge.mailbox.maildir"):
        assert [m.raw for m in fetch_all(source)] == [message(1)]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("message gone")]
    assert record.levelno == logging.INFO and record.key == keys[0]  # type: ignore[attr-defined]


def test_fetch_again_returns_what_was_not_moved(root: Path) -> None:
    keys = [maildir_drop(root, message(n)) for n in range(2)]
    source = MaildirSource(root)
    fetch_all(source)
    source.move(keys[:1], Destination.PROCESSED)
    assert [m.key for m in fetch_all(source)] == keys[1:]


def test_wait_times_out_when_nothing_new_arrives(root: Path) -> None:
    maildir_drop(root, message(1))
    source = MaildirSource(root)
    fetch_all(source)  # the waiting message is known: not a reason to wake
    assert source.wait(0.6) is False


def test_wait_wakes_when_a_message_is_dropped(root: Path) -> None:
    source = MaildirSource(root)
    fetch_all(source)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(source.wait(10)))
    waiter.start()
    time.sleep(0.2)
    maildir_drop(root, message(1))
    waiter.join(timeout=8)
    assert not waiter.is_alive() and woke == [True]


def test_wait_returns_at_once_for_mail_dropped_after_the_last_fetch(root: Path) -> None:
    source = MaildirSource(root)
    fetch_all(source)
    maildir_drop(root, message(1))
    assert source.wait(30) is True


# --- bounded work: sizes read before the bytes -------------------------------------------


def test_a_file_over_the_size_limit_gives_its_header_alone(root: Path) -> None:
    """Attack: five 50 MB emails in one batch peaked at 2.2 GB. The file's size is read
    first, and of one over max_message_bytes only the header is read."""
    small = maildir_drop(root, message(1))
    big = large_attachment(3_000_000, sender="someone@example.org")
    large = maildir_drop(root, big)
    source = MaildirSource(root, max_message_bytes=1_000_000)
    by_key = {m.key: m for m in fetch_all(source)}
    assert by_key[small].raw == message(1) and by_key[small].oversize is None
    head = big[: big.index(b"\r\n\r\n") + 4]
    assert by_key[large].raw == head
    assert by_key[large].oversize == len(big)


def test_batches_are_bounded_by_bytes_and_a_larger_message_comes_alone(root: Path) -> None:
    sizes = [400_000, 400_000, 400_000, 1_500_000, 100_000, 5_000_000]
    keys = []
    for n, size in enumerate(sizes):
        keys.append(maildir_drop(root, large_attachment(size, n)))
        set_mtime(root, keys[-1], datetime(2026, 12, 1, 9, n, tzinfo=UTC))
    source = MaildirSource(
        root, batch_size=100, max_message_bytes=2_000_000, max_batch_bytes=1_000_000
    )
    batches = [[m.key for m in batch] for batch in source.fetch()]
    # 5 MB is over the size limit: only its header is fetched, which costs nothing.
    assert batches == [keys[0:2], keys[2:3], keys[3:4], keys[4:6]]
