"""The first page after signing in: the coordinators' dashboard; for an officer their own
cases (/my-cases); for anyone else a plain page saying the console is not yet theirs.

The dashboard is one GET form over the case list: every filter, the sort and the page live
in the URL (console.filters.from_query reads them, the same rules as `cases list`), so a
view can be bookmarked, shared and gone back to. The page reads the counts, one page of
cases and, past the last page only, how many there are: never one query per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from mailbridge.console.dashboard import dashboard
from mailbridge.console.export import contact_label, status_label
from mailbridge.console.filters import FILTERS, STATUSES, CaseFilter, FilterErrors, from_query
from mailbridge.privacy import access
from mailbridge.signin.roles import Role
from mailbridge.web.render import page
from mailbridge.web.routing import Pages, Viewer, console, current_viewer, db

pages = Pages()

# Everything the URL may carry: the filters, then the order and the page.
QUERY = (*FILTERS, "sort", "order", "page")


@dataclass(frozen=True, slots=True)
class Field:
    """One filter on the form: its name in the URL (CaseFilter's field), label and kind."""

    name: str
    label: str
    kind: str = "text"  # text, date, number, status, check
    hint: str = ""
    suggest: str = ""  # the id of a datalist of known values


# The mock-up's seven filters first, then the rest.
FIELDS = (
    Field("type", "Query type", hint="For example, Pothole"),
    Field("ref", "Case ID", hint="All or part of a reference"),
    Field("service_area", "Service area", suggest="service-areas"),
    Field("surname", "Surname", hint="The member's"),
    Field("directorate", "Directorate", suggest="directorates"),
    Field("email", "Email", hint="The member's or the sender's"),
    Field("district", "District"),
    Field("status", "Status", kind="status"),
    Field("officer", "Lead officer", hint="Their email; additional officers too"),
    Field("member", "Member", hint="Part of a name, or an email"),
    Field("created_from", "Created from", kind="date", hint="For example, 2026-11-01"),
    Field("created_to", "Created to", kind="date", hint="For example, 2026-11-30"),
    Field("due_within", "Due within", kind="number", hint="Working days from today"),
    Field("search", "Text", hint="In the subject or the enquiry"),
    Field("overdue", "Overdue only", kind="check"),
)
LABELS = {f.name: f.label for f in FIELDS} | {"sort": "Sort", "order": "Order", "page": "Page"}

# The table: heading, and the sort key its header link sets (None: not sortable).
COLUMNS = (
    ("Reference", "reference"),
    ("Name", "member"),
    ("Enquiry type", None),
    ("Preferred contact method", None),
    ("Service area", None),
    ("Created", "created"),
    ("Status", "status"),
    ("Deadline", "due"),
    ("Lead officer", None),
)
STATUS_TAGS = {
    "new": "govuk-tag--blue",
    "in_progress": "govuk-tag--light-blue",
    "completed": "govuk-tag--green",
    "closed": "govuk-tag--grey",
}


def given(request: Request) -> dict[str, str]:
    """The URL's values this page knows, as typed (a bad one is shown back to be put right)."""
    return {name: request.query_params.get(name, "") for name in QUERY}


def problems(exc: FilterErrors) -> list[tuple[str, str]]:
    """Each bad value as (its field, one line naming it by its label on the form)."""
    order = {name: i for i, name in enumerate(LABELS)}  # as the form lists them
    ordered = sorted(exc.errors, key=lambda e: order.get(e.field, len(order)))
    return [(e.field, f"{LABELS.get(e.field, e.field)}: {e.problem}") for e in ordered]


def link(path: str, values: Mapping[str, Any], **change: Any) -> str:
    """`path` with the non-blank values, changed by `change` (None drops a value)."""
    merged = {**values, **change}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "", False)})
    return f"{path}?{query}" if query else path


def pagination(current: int, last: int) -> list[int | None]:
    """The page numbers to offer, None for a gap: 1 … 4 5 6 … 20."""
    shown = sorted({1, last, current - 1, current, current + 1} & set(range(1, last + 1)))
    numbers: list[int | None] = []
    for number in shown:
        if numbers and number - (numbers[-1] or 0) > 1:
            numbers.append(None)
        numbers.append(number)
    return numbers


def _headers(wanted: CaseFilter, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each column's header: a link sorting by it (again: the other way), and aria-sort."""
    headers = []
    for heading, key in COLUMNS:
        header: dict[str, Any] = {"heading": heading, "href": None, "sort": None}
        if key is not None:
            current = wanted.sort == key
            flip = current and not wanted.descending
            header["href"] = link("/", values, sort=key, order="desc" if flip else "asc", page=None)
            if current:
                header["sort"] = "descending" if wanted.descending else "ascending"
        headers.append(header)
    return headers


@pages.get("/", Role.SIGNED_IN)
def home(request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Response:
    if Role.COORDINATOR not in viewer.roles:
        if Role.OFFICER in viewer.roles:
            return RedirectResponse("/my-cases", status_code=303)
        return page(request, "web/not_available.html")
    state = console(request)
    services = state.services
    calendar = services.calendar
    today = calendar.local_date(state.clock())
    values = given(request)
    with db(request) as session:
        board = dashboard(session, calendar, today, newest=0)
    counts = [
        ("New", board.new, link("/", {"status": "new"})),
        ("In progress", board.in_progress, link("/", {"status": "in_progress"})),
        ("Completed", board.completed, link("/", {"status": "completed"})),
        ("Overdue", board.overdue, link("/", {"overdue": "yes"})),
        (
            f"Due within {board.due_soon_days} working days",
            board.due_soon,
            link("/", {"due_within": board.due_soon_days}),
        ),
    ]
    context: dict[str, Any] = {
        "counts": counts,
        "fields": FIELDS,
        "values": values,
        "statuses": [(s, status_label(s)) for s in STATUSES],
        "service_areas": [a.name for a in services.config.service_areas],
        "directorates": [d.name for d in services.config.directorates],
        "errors": [],
        # The filters beyond the mock-up's seven and status are folded away unless in use.
        "more_open": any(values[f.name] for f in FIELDS[8:]),
    }
    size = services.config.web.page_size
    try:
        wanted = from_query(values, limit=size)
    except FilterErrors as exc:
        context["errors"] = problems(exc)
        context["wrong"] = dict(context["errors"])
        return page(request, "web/dashboard.html", status_code=400, listed=None, **context)
    known = board.total(wanted)
    listed = access.list_cases(
        services.engine, wanted, calendar, viewer.actor, today=today, known_total=known
    )
    last = max(1, -(-listed.total // size))
    kept = {k: v for k, v in values.items() if k != "page"}
    return page(
        request,
        "web/dashboard.html",
        listed=listed,
        wanted=wanted,
        wrong={},
        first=wanted.offset + 1,
        last_shown=wanted.offset + len(listed.rows),
        last_page=last,
        headers=_headers(wanted, values),
        pages=[(n, link("/", kept, page=n) if n else None) for n in pagination(wanted.page, last)],
        previous=link("/", kept, page=wanted.page - 1) if 1 < wanted.page <= last else None,
        next=link("/", kept, page=wanted.page + 1) if wanted.page < last else None,
        exports=[(fmt, link("/export", kept, format=fmt)) for fmt in ("csv", "xlsx")],
        status_label=status_label,
        status_tags=STATUS_TAGS,
        contact_label=contact_label,
        zone=calendar.zone,
        **context,
    )
