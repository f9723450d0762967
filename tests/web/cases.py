"""Many cases at once for the dashboard and export tests: rows written straight to the
tables (like bench/console.py's generator), on the council's own people, with deadlines
around the web clock's today, statuses, extensions, pauses, contact methods and officers
spread so that every filter and every sort tells them apart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, CaseMember, CaseOfficer
from tests.factories import add_person
from tests.helpers.clock import FIXED_NOW
from tests.helpers.council import ANN, JANE, PRIYA, RAJ, SAM, TOM

CAL = WorkingCalendar()
TODAY = CAL.local_date(FIXED_NOW)
AREAS = [  # service area, directorate, enquiry type, subject
    ("Highways", "Environment and Transport", "Pothole", "Pothole on Mill Lane"),
    ("School Transport", "Children's Services", "Eligibility", "School bus refused"),
    ("Adult Social Care", "Adults and Health", "Care review", "Care package review"),
    ("Waste", "Environment and Transport", "Missed collection", "Bins not collected"),
]
DISTRICTS = ["Harborough", "Blaby", "Melton", "Oadby and Wigston"]
STATUSES = ["new", "in_progress", "completed", "new", "in_progress", "closed", "in_progress"]
CONTACTS = ["email", "phone", "letter", None]
# Subjects a spreadsheet would run as formulas.
FORMULAS = ['=HYPERLINK("http://evil.example/x","Click me")', "@SUM(1+1)*cmd|' /C calc'!A0"]


def due_for(i: int) -> date:
    """Deadlines around today: overdue, today, +2 and +3 working days, a month on."""
    k = i % 5
    if k == 0:
        return TODAY - timedelta(days=10)
    if k == 1:
        return TODAY
    if k in (2, 3):
        return CAL.add_working_days(TODAY, k)
    return TODAY + timedelta(days=30)


def seed_cases(engine: Engine, person_id: Callable[[str], int], n: int = 40) -> list[str]:
    """`n` cases, MQ-2026-00101 on, one a day back from today; their references."""
    members = [
        person_id(JANE),
        person_id(RAJ),
        add_person(engine, "member", "Cllr David Smithson", "david.smithson@example.gov.uk"),
        add_person(engine, "member", "Cllr Li Chen", "li.chen@example.gov.uk"),
    ]
    officers = [person_id(PRIYA), person_id(SAM), person_id(ANN)]
    references = []
    with transaction(engine) as session:
        for i in range(n):
            area, directorate, etype, subject = AREAS[i % 4]
            if i in (30, 31):
                subject = FORMULAS[i - 30]
            day = TODAY - timedelta(days=i)
            created = datetime.combine(day, time(10), tzinfo=CAL.zone).astimezone(UTC)
            status = STATUSES[i % len(STATUSES)]
            lead = None if i % 4 == 3 else officers[i % 3]
            reference = f"MQ-2026-{101 + i:05d}"
            case = Case(
                reference=reference,
                prefix="MQ",
                year=2026,
                seq=101 + i,
                subject=f"{subject} ({i})" if i not in (30, 31) else subject,
                body_text=("The gully is blocked again. " if i % 7 == 0 else "Please look. ")
                + f"Case number {i}.",
                status=status,
                member_id=members[i % 4],
                submitter_id=person_id(TOM) if i in (5, 25) else members[i % 4],
                lead_officer_id=lead,
                service_area=area,
                directorate=directorate,
                enquiry_type=etype,
                district=DISTRICTS[(i // 2) % 4],
                received_at=created,
                acknowledge_due=due_for(i),
                response_due=due_for(i),
                extended_due=CAL.add_working_days(TODAY, 1) if i % 10 == 0 else None,
                paused_at=created if i == 12 else None,
                completed_at=created if status == "completed" else None,
                preferred_contact=CONTACTS[i % 4],
                created_at=created,
                updated_at=created,
            )
            session.add(case)
            session.flush()
            if lead is not None:
                session.add(CaseOfficer(case_id=case.id, person_id=lead, role="lead"))  # type: ignore[arg-type]
            if i % 6 == 0:
                session.add(
                    CaseOfficer(case_id=case.id, person_id=officers[2], role="additional")  # type: ignore[arg-type]
                )
            if i in (7, 13):
                session.add(CaseMember(case_id=case.id, person_id=members[3]))  # type: ignore[arg-type]
            references.append(reference)
    return references
