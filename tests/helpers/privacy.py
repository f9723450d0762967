"""Reading a council's state around an erasure: the scrutiny report's figures, and every row
that an erasure could touch (to prove a dry run touched none)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from mailbridge.console import report_render, reports
from mailbridge.store.models import (
    AddressFlag,
    Attachment,
    AuditRecord,
    AutoMail,
    Case,
    CaseMember,
    Event,
    Message,
    OutboxMessage,
    Person,
    PersonAddress,
    ProcessingFailure,
    QuarantineItem,
)
from tests.helpers.council import Council

TABLES = (
    Case,
    CaseMember,
    Message,
    Attachment,
    Event,
    OutboxMessage,
    QuarantineItem,
    ProcessingFailure,
    Person,
    PersonAddress,
    AddressFlag,
    AutoMail,
    AuditRecord,
)


def report_csv(council: Council) -> str:
    """The scrutiny report over the test cases' months, as the panel's CSV."""
    with Session(council.engine) as session:
        built = reports.build_report(
            session,
            council.services.calendar,
            date(2026, 11, 1),
            date(2026, 12, 31),
            today=date(2029, 1, 1),
        )
    return report_render.render_csv(built)


def snapshot(council: Council) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table an erasure changes, and which stored blobs exist."""
    found: dict[str, list[dict[str, Any]]] = {}
    with Session(council.engine) as session:
        for model in TABLES:
            key = next(iter(model.__table__.primary_key.columns)).name  # type: ignore[attr-defined]
            rows = session.exec(select(model).order_by(col(getattr(model, key)))).all()
            found[model.__name__] = [row.model_dump() for row in rows]
    digests = {m["raw_sha256"] for m in found["Message"] if m["raw_sha256"]}
    digests |= {a["sha256"] for a in found["Attachment"] if a["sha256"]}
    found["blobs"] = [{d: council.services.blobs.exists(d)} for d in sorted(digests)]
    return found
