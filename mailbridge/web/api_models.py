"""The JSON API's bodies, as its OpenAPI description shows them (web/api.py; the values are
built by console/api_views.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from mailbridge.console.filters import FILTERS


def _no_nul(text: str) -> str:
    """PostgreSQL refuses a NUL in text: a 422 here, never a 500 at the query."""
    if "\x00" in text:
        raise ValueError("remove the NUL character (\\u0000)")
    return text


NoNul = AfterValidator(_no_nul)


class ErrorOut(BaseModel):
    error: str = Field(description="One line saying what to do.")


class CaseSummary(BaseModel):
    reference: str
    subject: str
    member: str = Field(description="The member's name.")
    status: str = Field(description="new, in_progress, completed or closed")
    service_area: str | None
    directorate: str | None
    district: str | None
    enquiry_type: str | None
    preferred_contact: str | None
    lead_officer: str | None = Field(description="The lead officer's name.")
    created_at: str = Field(description="UTC, ISO 8601")
    deadline: str = Field(description="The deadline that counts (extended or not), YYYY-MM-DD")
    overdue: bool
    paused: bool


class CasePage(BaseModel):
    cases: list[CaseSummary]
    page: int
    limit: int
    total: int = Field(description="Every matching case, all pages together.")
    next: str | None = Field(description="The next page's address; null on the last.")


class PersonOut(BaseModel):
    name: str
    email: str


class OfficerOut(PersonOut):
    role: str = Field(description="lead or additional")


class Deadlines(BaseModel):
    response_due: str
    extended_due: str | None
    extension_reason: str | None
    due: str = Field(description="The deadline that counts now.")
    working_days_left: int
    overdue: bool
    paused: bool


class AttachmentOut(BaseModel):
    filename: str
    content_type: str
    size: int


class MessageOut(BaseModel):
    at: str | None
    direction: str = Field(description="in or out")
    role: str | None = Field(description="enquiry, chaser, reply, note, ...; null: mail we sent")
    sender: str
    subject: str
    text: str


class EventOut(BaseModel):
    at: str | None
    kind: str
    actor: str
    detail: str


class CaseOut(BaseModel):
    reference: str
    subject: str
    enquiry: str
    status: str
    channel: str = Field(description="The door it came in by: email, web or api.")
    service_area: str | None
    directorate: str | None
    district: str | None
    enquiry_type: str | None
    preferred_contact: str | None
    sensitive: bool
    member: PersonOut
    submitter: PersonOut
    other_members: list[PersonOut]
    officers: list[OfficerOut]
    deadlines: Deadlines
    received_at: str | None
    first_response_at: str | None
    completed_at: str | None
    chasers: int
    attachments: list[AttachmentOut]
    messages: list[MessageOut]
    events: list[EventOut]


class TextIn(BaseModel):
    text: Annotated[str, NoNul] = Field(min_length=1, max_length=100_000)


class Responded(BaseModel):
    reference: str
    recipients: list[str] = Field(description="Who the response is emailed to.")


class Noted(BaseModel):
    reference: str


def _query(name: str, text: str) -> dict[str, object]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": text,
    }


# The list's query: the dashboard's filters (console/filters.py), read as text by
# `from_query` so every bad value is reported at once; declared here for the description.
LIST_PARAMETERS = [
    *(_query(name, "A dashboard filter (docs/api.md)") for name in FILTERS),
    _query("sort", "created, due, reference, status or member"),
    _query("order", "asc or desc"),
    _query("page", "From 1"),
    _query("limit", "Cases a page, 1 to 100 (50 unless given)"),
]


class FileIn(BaseModel):
    filename: str = Field(max_length=255)
    content: str = Field(description="The file's bytes, base64.")


class CaseIn(BaseModel):
    member: Annotated[str, NoNul] = Field(
        max_length=254, description="The councillor's email address."
    )
    subject: str = Field(max_length=200)
    details: str = Field(max_length=20_000)
    service_area: str | None = Field(
        default=None, description="One of the council's service areas; null: keyword routing."
    )
    resident_name: str = Field(default="", max_length=200)
    resident_address: str = Field(default="", max_length=1_000)
    resident_reference: str = Field(default="", max_length=100)
    preferred_contact: str | None = Field(default=None, description="email, phone or letter")
    attachments: list[FileIn] = Field(default_factory=list, max_length=10)


class Opened(BaseModel):
    reference: str
    response_due: str = Field(description="YYYY-MM-DD")
    repeated: bool = Field(description="True: this Idempotency-Key opened it before.")
