"""Erased means gone from the disk, not only from what mailbridge shows: after an erasure,
the words and the files are in no file mailbridge keeps on SQLite (the case database, the
blob store, and each one's write-ahead log). SQLite leaves deleted and overwritten content
in free space and in its log unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbridge.privacy import audit, requests
from mailbridge.store.migrate import ensure_database
from mailbridge.store.models import Attachment, utcnow
from tests.factories import add_person, fixture_bytes
from tests.helpers.council import GARETH, PRIYA, REF, build_council, reply

pytestmark = pytest.mark.usefixtures("fixed_clock")

PHOTOS = "member_enquiry_with_photo_and_pdf.eml"
SECOND = "MQ-2026-00002"
# Words of Jane's pothole enquiry (its subject and text) and of the officer's reply.
WORDS = [b"Mrs Patel of 14 Mill Lane", b"Pothole on Mill Lane", b"filled with tarmac at dawn"]


DATABASES = (".db", ".db-wal", ".db-shm", ".sqlite", ".sqlite-wal", ".sqlite-shm")


def _files(root: Path) -> dict[str, bytes]:
    """The databases mailbridge keeps (the case database, the blob store, their logs); not
    the test's mailbox and outbox folders, which stand for the mail servers."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name.endswith(DATABASES)
    }


def _holding(root: Path, needle: bytes) -> list[str]:
    return [name for name, data in _files(root).items() if needle in data]


def test_an_erased_case_leaves_no_trace_in_the_sqlite_files(tmp_path: Path) -> None:
    engine = ensure_database(f"sqlite:///{tmp_path / 'council.db'}")
    council = build_council(tmp_path, engine)
    mails = council.assigned_pothole()
    council.deliver(reply(mails[PRIYA], PRIYA, "It was filled with tarmac at dawn today."))
    add_person(engine, "member", "Cllr Gareth Jones", GARETH)
    assert council.deliver(fixture_bytes(PHOTOS)).references == [SECOND]  # stays whole
    for needle in WORDS:
        assert _holding(tmp_path, needle), needle  # the test looks where the words are

    requests.erase_case(
        council.services, REF, "ER-1", actor=audit.SERVICE, now=utcnow(), dry_run=False
    )
    for needle in WORDS:
        assert _holding(tmp_path, needle) == [], needle
    # The other case is still there, whole, with its photo and PDF; erased, they go too.
    assert _holding(tmp_path, b"Pothole and broken kerb")
    with council.db() as session:
        digests = session.exec(
            select(Attachment.sha256).where(col(Attachment.sha256).is_not(None))
        ).all()
    pieces = [council.services.blobs.get(d)[-200:-100] for d in digests if d]
    assert len(pieces) == 2 and all(_holding(tmp_path, p) for p in pieces)
    requests.erase_case(
        council.services, SECOND, "ER-2", actor=audit.SERVICE, now=utcnow(), dry_run=False
    )
    assert _holding(tmp_path, b"Pothole and broken kerb") == []
    assert [p for p in pieces if _holding(tmp_path, p)] == []
    engine.dispose()
