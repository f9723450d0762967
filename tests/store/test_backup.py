"""`mailbridge db backup`: a copy taken while mailbridge runs holds every case's emails.

Runs on SQLite (the case database copied too) and PostgreSQL (left to pg_dump).
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.errors import UserError
from mailbridge.pipeline.outcomes import CaseOpened
from mailbridge.pipeline.processor import Processor
from mailbridge.services import Services
from mailbridge.store.backup import backup
from mailbridge.store.blobs import BlobStore
from mailbridge.store.models import Attachment, Case, Message
from tests.factories import add_person, fixture_bytes, make_services, seed_directory

NOW = datetime(2026, 11, 26, 2, 30, 0)
MAIL = ["member_new_enquiry_pothole.eml", "member_enquiry_with_photo_and_pdf.eml"]


@pytest.fixture
def services(tmp_path: Path, engine: Engine) -> Services:
    seed_directory(engine)
    add_person(engine, "member", "Cllr Gareth Jones", "cllr.jones@members.example-county.gov.uk")
    return make_services(tmp_path, engine)


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_the_copy_holds_every_case_and_every_email_and_attachment_it_names(
    services: Services, tmp_path: Path
) -> None:
    outcomes = Processor(services).process_batch([(fixture_bytes(n), None) for n in MAIL])
    assert all(isinstance(o, CaseOpened) for o in outcomes)
    report = backup(services.config, tmp_path / "backups", NOW)
    assert report.folder == tmp_path / "backups" / "mailbridge-20261126-023000"

    blobs = report.folder / "blobs" / "blobs.sqlite"
    copied = {d: bytes(b) for d, b in rows(blobs, "SELECT sha256, data FROM blob")}
    with Session(services.engine) as session:
        named = [m.raw_sha256 for m in session.exec(select(Message)).all() if m.raw_sha256]
        named += [a.sha256 for a in session.exec(select(Attachment)).all() if a.sha256]
        references = sorted(session.exec(select(Case.reference)).all())
    assert len(named) >= 4 and set(named) <= set(copied)
    assert all(hashlib.sha256(copied[d]).hexdigest() == d for d in named)
    if services.config.database.url.startswith("sqlite"):
        database = report.folder / "mailbridge.db"
        assert report.copied == [database, blobs] and not report.postgres
        assert sorted(r[0] for r in rows(database, 'SELECT reference FROM "case"')) == references
    else:
        assert report.copied == [blobs] and report.postgres


def test_blob_files_of_earlier_versions_are_copied_too(services: Services, tmp_path: Path) -> None:
    data = b"an attachment stored by an earlier version"
    digest = hashlib.sha256(data).hexdigest()
    legacy = Path(services.config.storage.data_dir) / "blobs" / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    services.blobs.put(b"a blob of today")
    report = backup(services.config, tmp_path / "backups", NOW)
    assert report.blob_files == 1
    restored = BlobStore(report.folder)
    assert restored.get(digest) == data
    assert restored.get(hashlib.sha256(b"a blob of today").hexdigest()) == b"a blob of today"


def test_an_existing_backup_is_never_overwritten(services: Services, tmp_path: Path) -> None:
    services.blobs.put(b"kept")
    first = backup(services.config, tmp_path / "backups", NOW)
    with pytest.raises(UserError, match="already exists: choose another folder"):
        backup(services.config, tmp_path / "backups", NOW)
    assert first.folder.is_dir()
