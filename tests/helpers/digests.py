"""A council's services and a few people, with cases written straight to the database: the
ground of the digest tests, and of the report figures the satisfaction tests read."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailbridge.deadlines.digests import DigestMail
from mailbridge.delivery.templating import RenderedEmail
from mailbridge.store.db import transaction
from mailbridge.store.models import Case
from tests.factories import add_person, make_services

SUPPORT = "member.support@example.gov.uk"
HEAD = "alex.head@example.gov.uk"
ET, AH, CS = "Environment and Transport", "Adults and Health", "Children's Services"
DIRECTORATES = [
    {"name": ET, "head_name": "Alex Head", "head_email": HEAD},
    {"name": AH},  # no head: the coordinators alone
    {"name": CS, "head_name": "Chris Lee", "head_email": "chris.lee@example.gov.uk"},
]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


class Desk:
    """A council's services and a few people; cases are written straight to the database."""

    def __init__(self, tmp_path: Path, engine: Engine, **sections: Any) -> None:
        self.services = make_services(tmp_path, engine, directorates=DIRECTORATES, **sections)
        self.engine = engine
        self.people = {
            "jane": add_person(engine, "member", "Cllr Jane Smith", "jane@example.gov.uk"),
            "raj": add_person(engine, "member", "Cllr Raj Patel", "raj@example.gov.uk"),
            "gareth": add_person(engine, "member", "Cllr Gareth Jones", "gareth@example.gov.uk"),
            "priya": add_person(
                engine, "officer", "Priya Shah", "priya.shah@example.gov.uk",
                service_area="Highways", directorate=ET,
            ),
        }  # fmt: skip
        self.seq = 0

    def case(self, member: str, subject: str, **fields: Any) -> str:
        self.seq += 1
        reference = f"MQ-2026-{self.seq:05d}"
        fields.setdefault("received_at", utc(2026, 11, 10, 10))
        fields.setdefault("acknowledge_due", date(2026, 11, 11))
        fields.setdefault("service_area", "Highways")
        fields.setdefault("directorate", ET)
        lead = fields.pop("lead", None)
        with transaction(self.engine) as session:
            session.add(
                Case(
                    reference=reference, prefix="MQ", year=2026, seq=self.seq, subject=subject,
                    member_id=self.people[member], submitter_id=self.people[member],
                    lead_officer_id=self.people[lead] if lead else None, **fields,
                )
            )  # fmt: skip
        return reference

    def add(self, *rows: object) -> None:
        with transaction(self.engine) as session:
            session.add_all(rows)

    def id_of(self, reference: str) -> int:
        with Session(self.engine) as session:
            return session.exec(select(Case.id).where(Case.reference == reference)).one()  # type: ignore[return-value]

    def render(self, mail: DigestMail) -> RenderedEmail:
        s = self.services
        return s.templates.render(
            mail.template, **mail.context, council=s.config.council.name,
            mailbox=str(s.config.smtp.from_address), reference=None,
        )  # fmt: skip


def seed_week(desk: Desk) -> None:
    """Received 23-29 Nov: two Highways cases and one Waste case (E&T), answered in 2 working
    days where answered; rated 4 and 2. An older E&T case is overdue; AH's case is answered."""
    desk.case("jane", "E1", status="completed", lead="priya", received_at=utc(2026, 11, 23, 10),
              response_due=date(2026, 12, 7), first_response_at=utc(2026, 11, 25, 10),
              completed_at=utc(2026, 11, 25, 10), satisfaction=4,
              satisfaction_at=utc(2026, 11, 26, 9))  # fmt: skip
    desk.case("raj", "E2", status="in_progress", lead="priya", received_at=utc(2026, 11, 24, 10),
              response_due=date(2026, 12, 8))  # fmt: skip
    desk.case("jane", "E3", status="completed", lead="priya", service_area="Waste",
              received_at=utc(2026, 11, 25, 10), response_due=date(2026, 12, 9),
              first_response_at=utc(2026, 11, 27, 10), completed_at=utc(2026, 11, 27, 10),
              satisfaction=2, satisfaction_at=utc(2026, 11, 27, 12))  # fmt: skip
    desk.case("raj", "E4", status="in_progress", lead="priya", received_at=utc(2026, 11, 2, 10),
              response_due=date(2026, 11, 16))  # fmt: skip
    desk.case("raj", "A1", status="completed", lead="priya", directorate=AH,
              service_area="Adult Social Care", received_at=utc(2026, 11, 2, 10),
              response_due=date(2026, 11, 16), first_response_at=utc(2026, 11, 3, 10))  # fmt: skip
