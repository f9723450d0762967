"""The councillors' pages: "My enquiries" and an enquiry's page, for a member and for a
delegate acting for the member they are registered for.

The list is console/member_status.py's `member_dashboard`, the builder of the `status`
email and the weekly digest too, read one page at a time with the filters in the URL.
An enquiry's page shows what the member may see of it (cases/permissions.py, Action.SEE);
its two buttons call cases/portal.py, which runs the email door's own functions. A case
someone has no standing on is "page not found".
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData
from starlette.responses import Response

from mailbridge.cases import portal
from mailbridge.cases.permissions import Action, acting_for
from mailbridge.console.export import status_label
from mailbridge.console.filters import MOST_PAGES, STATUSES
from mailbridge.console.member_status import entry, member_dashboard, sent_to_member
from mailbridge.errors import UserError
from mailbridge.privacy import audit
from mailbridge.services import Services
from mailbridge.signin.roles import Role
from mailbridge.store.db import transaction
from mailbridge.store.models import CaseStatus, Person
from mailbridge.web.pages.case import file_download
from mailbridge.web.pages.home import STATUS_TAGS, link, pagination
from mailbridge.web.render import page
from mailbridge.web.routing import AttachmentId, Pages, Viewer, console, current_viewer, db

pages = Pages()

BANNERS = {
    "requested": "Update requested: the lead officer and the Member Support Team have been told",
    "recorded": "Update request recorded: the lead officer was told of your earlier requests "
    "today, so was not emailed again",
    "reopened": "Enquiry reopened: the lead officer and the Member Support Team have been told",
}


def _filters(request: Request) -> tuple[dict[str, str], list[tuple[str, str]], int]:
    """The URL's status, text and page, and what is wrong with them."""
    values = {k: request.query_params.get(k, "").strip() for k in ("status", "q", "page")}
    errors = []
    if values["status"] and values["status"] not in STATUSES:
        errors.append(("status", "Status: choose one from the list"))
    number = 1
    if values["page"]:
        if values["page"].isdigit() and 1 <= int(values["page"]) <= MOST_PAGES:
            number = int(values["page"])
        else:
            errors.append(("page", "Page: give a whole number, like 2"))
    return values, errors, number


@pages.get("/enquiries", Role.COUNCILLOR)
def my_enquiries(request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Response:
    state = console(request)
    services: Services = state.services
    today = services.calendar.local_date(state.clock())
    values, errors, number = _filters(request)
    size = services.config.web.page_size
    context: dict[str, Any] = {
        "values": values,
        "errors": errors,
        "statuses": [(s, status_label(s)) for s in STATUSES],
        "status_label": status_label,
        "status_tags": STATUS_TAGS,
    }
    with db(request) as session:
        person = session.get(Person, viewer.person_id)
        member_id = acting_for(person) if person is not None else None
        member = session.get(Person, member_id) if member_id is not None else None
        context["acting"] = member is not None and member.id != viewer.person_id
        if errors or member_id is None:
            return page(
                request,
                "web/enquiries.html",
                status_code=400 if errors else 200,
                board=None,
                member=member,
                **context,
            )
        board = member_dashboard(
            session,
            services,
            member_id,
            today,
            status=values["status"] or None,
            text=values["q"] or None,
            offset=(number - 1) * size,
            limit=size,
        )
    last = max(1, -(-board.total // size))
    kept = {k: v for k, v in values.items() if k != "page"}
    return page(
        request,
        "web/enquiries.html",
        board=board,
        member=member,
        number=number,
        first=(number - 1) * size + 1,
        last_shown=(number - 1) * size + len(board.entries),
        last_page=last,
        pages=[
            (n, link("/enquiries", kept, page=n) if n else None) for n in pagination(number, last)
        ],
        previous=link("/enquiries", kept, page=number - 1) if 1 < number <= last else None,
        next=link("/enquiries", kept, page=number + 1) if number < last else None,
        filtering=bool(values["status"] or values["q"]),
        **context,
    )


def _enquiry_page(
    request: Request,
    reference: str,
    viewer: Viewer,
    *,
    status_code: int = 200,
    banner: str | None = None,
    error: str | None = None,
    failed: str | None = None,
    text: str = "",
) -> Response:
    """The page, its view recorded in the audit as a coordinator's is."""
    state = console(request)
    services: Services = state.services
    now = state.clock()
    today = services.calendar.local_date(now)
    with transaction(services.engine) as session:
        try:
            case = portal.member_case(session, viewer.person_id, reference, Action.SEE)
        except portal.NotYours:
            raise HTTPException(status_code=404) from None
        assert case.id is not None
        lead = session.get(Person, case.lead_officer_id) if case.lead_officer_id else None
        shown = entry(case, lead, services, today)
        files = list(session.exec(portal.member_attachments(case.id)))
        letters = sent_to_member(session, services, case.id)
        window = services.config.cases.reopen_working_days
        audit.record(session, viewer.actor, "case.show", case_reference=case.reference)
        context = {
            "e": shown,
            "c": case,
            "files": files,
            "letters": letters,
            "received": services.calendar.local_date(case.received_at),
            "may_chase": case.status in (CaseStatus.NEW, CaseStatus.IN_PROGRESS),
            "may_reopen": portal.may_reopen(case, services.calendar, window, today),
            "window": window,
            "completed": case.status == CaseStatus.COMPLETED,
        }
        return page(
            request,
            "web/enquiry.html",
            status_code=status_code,
            title=("Error: " if error else "") + f"{case.reference} {case.subject}",
            banner=banner,
            error=error,
            failed=failed,
            text=text,
            status_label=status_label,
            status_tags=STATUS_TAGS,
            **context,
        )


@pages.get("/enquiries/{reference}", Role.COUNCILLOR)
def enquiry(
    request: Request,
    reference: str,
    viewer: Annotated[Viewer, Depends(current_viewer)],
    done: str | None = None,
) -> Response:
    return _enquiry_page(request, reference, viewer, banner=BANNERS.get(done or ""))


@pages.get("/enquiries/{reference}/attachments/{attachment_id}", Role.COUNCILLOR, audited=True)
def download(
    request: Request,
    reference: str,
    attachment_id: AttachmentId,
    viewer: Annotated[Viewer, Depends(current_viewer)],
) -> Response:
    """One of the files the member may have; any other id, or a case not theirs: not found."""
    try:
        taken = portal.take_attachment(
            console(request).services, reference, attachment_id, actor=viewer.actor
        )
    except UserError:
        raise HTTPException(status_code=404) from None
    return file_download(taken)


def _act(request: Request, reference: str, viewer: Viewer, name: str, form: FormData) -> Response:
    state = console(request)
    services: Services = state.services
    sent = form.get("text")
    text = sent if isinstance(sent, str) else ""
    try:
        if name == "update":
            requested = portal.request_update(services, reference, text, actor=viewer.actor)
            ref, done = requested.reference, "recorded" if requested.limit else "requested"
        else:
            done = "reopened"
            ref = portal.reopen(services, reference, text, actor=viewer.actor, now=state.clock())
    except portal.NotYours:
        raise HTTPException(status_code=404) from None
    except UserError as exc:
        return _enquiry_page(
            request, reference, viewer, status_code=400, error=str(exc), failed=name, text=text
        )
    return RedirectResponse(f"/enquiries/{ref}?done={done}", status_code=303)


pages.actions(
    "/enquiries/{reference}/{action}", Role.COUNCILLOR, ("update", "reopen"), _act, prefix="enquiry"
)
