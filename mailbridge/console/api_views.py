"""Cases as the JSON API shows them to another council system (docs/api.md).

A token's standing (permissions.Standing.API_READ/API_WRITE) sees a case whole, as a
coordinator does: its fields, deadlines, people, every message's text (the enquiry, the
responses, chasers, internal notes) and its events. Never shown: the raw emails, attachment
contents, the outbox's rendered mail, sign-in or API tokens, webhook bodies.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from mailbridge.console.filters import CaseListRow
from mailbridge.console.views import CaseDetail
from mailbridge.store.models import Event, Message, Person, as_utc


def _moment(value: datetime | None) -> str | None:
    return as_utc(value).isoformat().replace("+00:00", "Z") if value else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _person(person: Person | None) -> dict[str, str] | None:
    return None if person is None else {"name": person.name, "email": person.email}


def list_item(row: CaseListRow) -> dict[str, Any]:
    """One case of a list: the dashboard's columns."""
    return {
        "reference": row.reference,
        "subject": row.subject,
        "member": row.member,
        "status": row.status,
        "service_area": row.service_area,
        "directorate": row.directorate,
        "district": row.district,
        "enquiry_type": row.enquiry_type,
        "preferred_contact": row.preferred_contact,
        "lead_officer": row.lead_officer,
        "created_at": _moment(row.created_at),
        "deadline": _day(row.deadline),
        "overdue": row.overdue,
        "paused": row.paused,
    }


def case_document(session: Session, detail: CaseDetail, today: date) -> dict[str, Any]:
    """One case in full, for a token that may see it (SEE and SEE_INTERNAL)."""
    case = detail.case
    due = case.extended_due or case.response_due
    running = case.status in ("new", "in_progress") and case.paused_at is None
    messages = session.exec(
        select(Message)
        .where(Message.case_id == case.id, col(Message.erased_at).is_(None))
        .order_by(col(Message.received_at), col(Message.id))
    ).all()
    events = session.exec(
        select(Event).where(Event.case_id == case.id).order_by(col(Event.at), col(Event.id))
    ).all()
    return {
        "reference": case.reference,
        "subject": case.subject,
        "enquiry": case.body_text,
        "status": case.status,
        "channel": case.channel,
        "service_area": case.service_area,
        "directorate": case.directorate,
        "district": case.district,
        "enquiry_type": case.enquiry_type,
        "preferred_contact": case.preferred_contact,
        "sensitive": case.sensitive,
        "member": _person(detail.member),
        "submitter": _person(detail.submitter),
        "other_members": [_person(p) for p in detail.other_members],
        "officers": [
            {"name": p.name, "email": p.email, "role": role} for p, role in detail.officers
        ],
        "deadlines": {
            "response_due": _day(case.response_due),
            "extended_due": _day(case.extended_due),
            "extension_reason": case.extension_reason,
            "due": _day(due),
            "working_days_left": detail.working_days_left,
            "overdue": running and due < today,
            "paused": case.paused_at is not None,
        },
        "received_at": _moment(case.received_at),
        "first_response_at": _moment(case.first_response_at),
        "completed_at": _moment(case.completed_at),
        "chasers": detail.chasers,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in detail.attachments
            if not a.inline
        ],
        "messages": [
            {
                "at": _moment(m.received_at),
                "direction": m.direction,
                "role": m.role,
                "sender": m.sender,
                "subject": m.subject,
                "text": m.reply_text if m.reply_text is not None else m.body_text,
            }
            for m in messages
        ],
        "events": [
            {"at": _moment(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail}
            for e in events
        ],
    }
