"""Which cases a coordinator asked for: one SQL query for `cases list`, `export`, `dashboard`.

A `CaseFilter` holds the filters that combine (all must hold), the sort and the page. The
query is built once in SQL, joins and subqueries included, so a page of 50 out of 100,000
cases reads 50 rows: nothing loads every case into Python. Text filters ignore case.

Dates are the council's calendar dates (invariant 6): `created_from`/`created_to` are whole
local days, and the effective deadline is the extended one when an officer set one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from mailbridge.deadlines.calendar import WorkingCalendar
from mailbridge.errors import UserError
from mailbridge.store.models import (
    Case,
    CaseMember,
    CaseOfficer,
    CaseStatus,
    Person,
    PersonAddress,
    utcnow,
)

STATUSES = tuple(s.value for s in CaseStatus)
OPEN = (CaseStatus.NEW.value, CaseStatus.IN_PROGRESS.value)
FILTERS = (
    "type",
    "ref",
    "service_area",
    "surname",
    "directorate",
    "email",
    "district",
    "status",
    "officer",
    "member",
    "overdue",
    "due_within",
    "created_from",
    "created_to",
    "search",
)
SORTS = ("created", "due", "reference", "status", "member")
# Beyond these a number is a slip (and a date or an offset past what a database holds).
MOST_WORKING_DAYS = 1000
MOST_PAGES = 10_000_000
# Newest first for the creation date; soonest first for everything else.
_DEFAULT_DESC = {"created": True}


class FilterError(UserError):
    """A bad filter value: the CaseFilter field it is for, and the problem in words that
    name no command-line option (the web console puts its own label in front)."""

    def __init__(self, field: str, problem: str, message: str | None = None) -> None:
        super().__init__(message or f"{_option(field)}: {problem}")
        self.field = field
        self.problem = problem


class FilterErrors(UserError):
    """Every bad value of a form at once, so a person can put them all right in one go."""

    def __init__(self, errors: list[FilterError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def parse_date(text: str | date | None, option: str) -> date | None:
    """A YYYY-MM-DD date from an option, or one clear line naming the option."""
    if text is None or isinstance(text, date):
        return text
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        problem = f"{text!r} is not a date; write it as YYYY-MM-DD"
        raise FilterError(option.lstrip("-").replace("-", "_"), problem) from None


def normalise_status(text: str | None) -> str | None:
    """`new`, `in_progress` (or `in progress`, `In-Progress`), `completed`, `closed`."""
    if text is None:
        return None
    value = text.strip().lower().replace("-", "_").replace(" ", "_")
    if value not in STATUSES:
        raise FilterError("status", f"unknown status {text!r}; use one of {', '.join(STATUSES)}")
    return value


def parse_whole(text: str, field: str, *, least: int) -> int:
    """A whole number of at least `least` from a form's text field."""
    try:
        value = int(text.strip())
    except ValueError:
        value = least - 1
    if value < least:
        raise FilterError(field, f"{text!r} is not a whole number of {least} or more")
    return value


# How a form or a URL says yes to a flag such as `overdue`.
YES = ("yes", "true", "on", "1")
ORDERS = ("asc", "desc")  # `order=` beside `sort=`


def from_query(fields: Mapping[str, str], *, limit: int | None) -> CaseFilter:
    """A CaseFilter from text fields named as its own (a web form, a bookmarked URL): blank
    means unset, `overdue=yes`, `due_within=2`, `order=asc|desc`, `page=3`. Every bad value
    is reported together (FilterErrors), each naming its field."""
    values: dict[str, Any] = {}
    errors: list[FilterError] = []

    def text(name: str) -> str | None:
        value = fields.get(name, "").strip()
        return value or None

    for name in FILTERS:
        given = text(name)
        try:
            if name == "overdue":
                values[name] = (given or "").lower() in YES
            elif name == "due_within":
                values[name] = None if given is None else parse_whole(given, name, least=0)
            elif name == "status":
                values[name] = normalise_status(given)
            elif name in ("created_from", "created_to"):
                values[name] = parse_date(given, _option(name))
            else:
                values[name] = given
        except FilterError as exc:
            errors.append(exc)
    order = (text("order") or "").lower()
    if order and order not in ORDERS:
        errors.append(FilterError("order", f"unknown order {order!r}; use asc or desc"))
    values["desc"] = None if order not in ORDERS else order == "desc"
    values["sort"] = text("sort") or "created"
    page = text("page")
    try:
        values["page"] = 1 if page is None else parse_whole(page, "page", least=1)
    except FilterError as exc:
        errors.append(exc)
    if not errors:
        try:
            return CaseFilter(**values, limit=limit)
        except FilterError as exc:
            errors.append(exc)
    raise FilterErrors(errors)


@dataclass
class CaseFilter:
    """Filters that combine, a sort and a page. Unset filters (None, False) match all."""

    type: str | None = None  # enquiry type
    ref: str | None = None  # part of a reference: "00042", "MQ-2026-000"
    service_area: str | None = None
    surname: str | None = None  # the member's surname: last word of the name
    directorate: str | None = None
    email: str | None = None  # any address of the member or the submitter
    district: str | None = None
    status: str | None = None
    officer: str | None = None  # any address of the lead or an additional officer
    member: str | None = None  # any address of a member on the case, or part of a name
    overdue: bool = False
    due_within: int | None = None  # working days from today
    created_from: date | None = None
    created_to: date | None = None
    search: str | None = None  # in the subject and the enquiry text
    sort: str = "created"
    desc: bool | None = None  # None: newest first for created, ascending otherwise
    limit: int | None = 50  # None: every matching case (exports)
    page: int = 1

    def __post_init__(self) -> None:
        self.status = normalise_status(self.status)
        self.created_from = parse_date(self.created_from, "--created-from")
        self.created_to = parse_date(self.created_to, "--created-to")
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise FilterError(
                "created_to",
                f"{self.created_to} is before the created-from date {self.created_from}",
                f"--created-from {self.created_from} is after --created-to {self.created_to}",
            )
        self.sort = (self.sort or "created").strip().lower()
        if self.sort not in SORTS:
            choices = ", ".join(SORTS)
            raise FilterError("sort", f"unknown sort key {self.sort!r}; use one of {choices}")
        if self.due_within is not None and not 0 <= self.due_within <= MOST_WORKING_DAYS:
            raise FilterError(
                "due_within", f"give a number of working days from 0 to {MOST_WORKING_DAYS:,}"
            )
        if self.limit is not None and self.limit < 1:
            raise FilterError("limit", "give a number of cases, 1 or more")
        if self.page < 1:
            raise FilterError("page", "pages start at 1")
        if self.page > MOST_PAGES:
            raise FilterError("page", f"no list has more than {MOST_PAGES:,} pages")

    @property
    def filtering(self) -> bool:
        """Whether any filter is set (else every case matches)."""
        values = (getattr(self, name) for name in FILTERS)
        return any(v is not None and v is not False and v != "" for v in values)

    @property
    def given(self) -> str:
        """The filters set, as the audit records them: `status=new overdue member=Jane`
        (`every case` when none is)."""
        words = []
        for name in FILTERS:
            value = getattr(self, name)
            if value is True:
                words.append(name)
            elif value is not None and value is not False and value != "":
                words.append(f"{name}={value}")
        return " ".join(words) or "every case"

    @property
    def descending(self) -> bool:
        return _DEFAULT_DESC.get(self.sort, False) if self.desc is None else self.desc

    @property
    def offset(self) -> int:
        return 0 if self.limit is None else (self.page - 1) * self.limit


@dataclass(frozen=True, slots=True)
class CaseListRow:
    """One case as lists, exports and the dashboard show it."""

    reference: str
    member: str
    subject: str
    enquiry_type: str | None
    preferred_contact: str | None
    service_area: str | None
    directorate: str | None
    district: str | None
    status: str
    created_at: datetime  # aware UTC
    deadline: date  # the extended deadline when there is one, else the original
    lead_officer: str | None
    overdue: bool  # open, not paused and past its deadline
    paused: bool = False


def effective_due() -> ColumnElement[date]:
    """The deadline that counts now: an officer's extension, else the original."""
    return func.coalesce(Case.extended_due, Case.response_due)


def _is_open() -> ColumnElement[bool]:
    return col(Case.status).in_(OPEN)


def _running() -> ColumnElement[bool]:
    """Open and not paused (`case pause`): a paused case is neither overdue nor due soon."""
    return and_(_is_open(), col(Case.paused_at).is_(None))


def overdue_clause(today: date) -> ColumnElement[bool]:
    return and_(_running(), effective_due() < today)


def due_within_clause(today: date, calendar: WorkingCalendar, days: int) -> ColumnElement[bool]:
    last = calendar.add_working_days(today, days)
    return and_(_running(), effective_due() >= today, effective_due() <= last)


def _escape(text: str) -> str:
    """`text` for a LIKE pattern, its wildcards taken literally (escape character `\\`)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere."""
    return f"%{_escape(text)}%"


def _people_with_address(address: str) -> Select[Any]:
    return select(PersonAddress.person_id).where(PersonAddress.email == address.strip().lower())


def _local_midnight_utc(day: date, calendar: WorkingCalendar) -> datetime:
    """The first moment of a council calendar day, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=calendar.zone)


def conditions(f: CaseFilter, calendar: WorkingCalendar, today: date) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a filter, on Case alone (people through subqueries)."""
    where: list[ColumnElement[bool]] = []

    def same(column: Any, value: str) -> None:
        where.append(func.lower(column) == value.strip().lower())

    if f.type:
        same(Case.enquiry_type, f.type)
    if f.service_area:
        same(Case.service_area, f.service_area)
    if f.directorate:
        same(Case.directorate, f.directorate)
    if f.district:
        same(Case.district, f.district)
    if f.ref:
        where.append(col(Case.reference).like(_like(f.ref.strip().upper()), escape="\\"))
    if f.status:
        where.append(Case.status == f.status)
    if f.surname:
        last = f.surname.strip().lower()
        named = select(Person.id).where(
            or_(
                func.lower(Person.name) == last,
                func.lower(Person.name).like(f"% {_escape(last)}", escape="\\"),
            )
        )
        where.append(col(Case.member_id).in_(named))
    if f.email:
        people = _people_with_address(f.email)
        where.append(or_(col(Case.member_id).in_(people), col(Case.submitter_id).in_(people)))
    if f.officer:
        people = _people_with_address(f.officer)
        others = select(CaseOfficer.case_id).where(col(CaseOfficer.person_id).in_(people))
        where.append(or_(col(Case.lead_officer_id).in_(people), col(Case.id).in_(others)))
    if f.member:
        text = f.member.strip().lower()
        people = (
            select(Person.id)
            .where(
                or_(
                    func.lower(Person.name).like(_like(text), escape="\\"),
                    col(Person.id).in_(_people_with_address(text)),
                )
            )
            .where(Person.kind == "member")
        )
        others = select(CaseMember.case_id).where(col(CaseMember.person_id).in_(people))
        where.append(or_(col(Case.member_id).in_(people), col(Case.id).in_(others)))
    if f.overdue:
        where.append(overdue_clause(today))
    if f.due_within is not None:
        where.append(due_within_clause(today, calendar, f.due_within))
    if f.created_from:
        where.append(Case.created_at >= _local_midnight_utc(f.created_from, calendar))
    if f.created_to and f.created_to < date.max:  # up to the last date there is: no bound
        end = _local_midnight_utc(f.created_to + timedelta(days=1), calendar)
        where.append(Case.created_at < end)
    if f.search:
        pattern = _like(f.search.strip())
        where.append(
            or_(
                col(Case.subject).ilike(pattern, escape="\\"),
                col(Case.body_text).ilike(pattern, escape="\\"),
            )
        )
    return where


_MEMBER = aliased(Person, name="member")
_LEAD = aliased(Person, name="lead")


def _order(f: CaseFilter) -> list[Any]:
    rank = case(*((Case.status == s, i) for i, s in enumerate(STATUSES)), else_=len(STATUSES))
    keys: list[Any] = {
        "created": [Case.created_at],
        "due": [effective_due()],
        "reference": [Case.year, Case.seq, Case.reference],
        "status": [rank],
        "member": [_MEMBER.name],
    }[f.sort]
    keys = [*keys, Case.id]
    return [k.desc() if f.descending else k.asc() for k in keys]


def case_query(f: CaseFilter, calendar: WorkingCalendar, today: date) -> Select[Any]:
    """One SELECT giving the list's columns for the filter's page, in the filter's order."""
    query = (
        select(
            Case.reference,
            _MEMBER.name,
            Case.subject,
            Case.enquiry_type,
            Case.preferred_contact,
            Case.service_area,
            Case.directorate,
            Case.district,
            Case.status,
            Case.created_at,
            effective_due().label("deadline"),
            _LEAD.name.label("lead_officer"),
            Case.paused_at,
        )
        .join(_MEMBER, _MEMBER.id == Case.member_id)
        .outerjoin(_LEAD, _LEAD.id == Case.lead_officer_id)
        .where(*conditions(f, calendar, today))
        .order_by(*_order(f))
    )
    if f.limit is not None:
        query = query.limit(f.limit).offset(f.offset)
    return query


def _row(values: Any, today: date) -> CaseListRow:
    status, due, paused = values[8], values[10], values[12] is not None
    return CaseListRow(
        *values[:12], overdue=status in OPEN and not paused and due < today, paused=paused
    )


def list_cases(
    session: Session, f: CaseFilter, calendar: WorkingCalendar, today: date
) -> list[CaseListRow]:
    """The filter's page of cases."""
    return [_row(r, today) for r in session.execute(case_query(f, calendar, today))]


def iter_cases(
    session: Session, f: CaseFilter, calendar: WorkingCalendar, today: date, *, chunk: int = 1000
) -> Iterator[CaseListRow]:
    """Every case the filter's page holds (all of them with limit None), read in chunks."""
    result = session.execute(case_query(f, calendar, today).execution_options(yield_per=chunk))
    for r in result:
        yield _row(r, today)


def count_cases(
    session: Session,
    f: CaseFilter,
    calendar: WorkingCalendar | None = None,
    today: date | None = None,
) -> int:
    """How many cases match the filter, all pages together."""
    calendar = calendar or WorkingCalendar()
    today = today or calendar.local_date(utcnow())
    query = select(func.count()).select_from(Case).where(*conditions(f, calendar, today))
    return int(session.execute(query).scalar_one())
