"""The officers' pages ("My cases"): the cases an officer leads or is an additional officer
on, each case's enquiry, files and history, and the answers they would otherwise email.

Each answer is a form posted to /my-cases/{reference}/{action} that calls the function in
cases/officer_actions.py, which does what the matching email does (cases/inbound.py) in one
transaction and queues the same mail. Who may see and do what is asked of
cases/permissions.py: an officer not on the case gets 404 for the page, its files and every
action, as if it did not exist; an additional officer's answer to the member is refused
(403). Forms carry the case's version, as the coordinators' case page does, so an answer to
a case that changed since the page was loaded is refused (409) with nothing done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, ImmutableMultiDict, UploadFile
from starlette.responses import Response

from mailbridge.cases import coordinator, officer_actions, records
from mailbridge.cases.permissions import Action, Standing, allows, standings
from mailbridge.console import views
from mailbridge.console.export import status_label
from mailbridge.console.filters import MOST_PAGES, FilterError, normalise_status
from mailbridge.console.my_cases import my_cases
from mailbridge.deadlines.policy import EXTEND_MOST_DAYS
from mailbridge.errors import UserError
from mailbridge.privacy import access
from mailbridge.services import Services
from mailbridge.signin.roles import Role
from mailbridge.store.models import Attachment, Case, CaseStatus, Person
from mailbridge.web.pages.case import file_download
from mailbridge.web.pages.home import STATUS_TAGS, link, pagination
from mailbridge.web.render import page
from mailbridge.web.routing import AttachmentId, Pages, Viewer, console, current_viewer, db

pages = Pages()

BANNERS = {
    "response": "Response sent to the member: the case is completed",
    "holding": "Holding reply sent to the member: the case stays open",
    "extended": "Deadline extended: the member is told the new date and why",
    "noted": "Internal note added (not sent to the member)",
    "contributed": "Contribution sent to the lead officer",
}


def _standing(session: Session, viewer: Viewer, reference: str) -> frozenset[Standing]:
    """The viewer's officer standings on the case; 404 when they have none (or no case)."""
    case = session.exec(select(Case).where(Case.reference == reference.strip().upper())).first()
    person = session.get(Person, viewer.person_id) if viewer.person_id else None
    held = (
        standings(session, person, case) & officer_actions.OFFICER_STANDINGS
        if case is not None
        else frozenset()
    )
    if not held:
        raise HTTPException(status_code=404)
    return held


# --- the list ------------------------------------------------------------------------


@pages.get("/my-cases", Role.OFFICER)
def my_list(request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Response:
    state = console(request)
    services: Services = state.services
    today = services.calendar.local_date(state.clock())
    values = {k: request.query_params.get(k, "") for k in ("status", "overdue", "page")}
    errors: list[tuple[str, str]] = []
    status = None
    try:
        status = normalise_status(values["status"] or None)
    except FilterError:
        errors.append(("status", "Status: choose one from the list"))
    number = values["page"].strip() or "1"
    if not number.isdigit() or not 1 <= int(number) <= MOST_PAGES:
        errors.append(("page", "Page: give a page number, 1 or more"))
    overdue = values["overdue"] == "yes"
    context: dict[str, Any] = {
        "values": values,
        "statuses": [(s, status_label(s)) for s in CaseStatus],
        "errors": errors,
        "status_label": status_label,
        "status_tags": STATUS_TAGS,
    }
    if errors:
        return page(request, "web/my_cases.html", status_code=400, found=None, **context)
    size = services.config.web.page_size
    current = int(number)
    assert viewer.person_id is not None
    with db(request) as session:
        found = my_cases(
            session,
            viewer.person_id,
            today,
            status=status,
            overdue=overdue,
            page=current,
            size=size,
        )
    last = max(1, -(-found.total // size))
    kept = {k: v for k, v in values.items() if k != "page"}
    return page(
        request,
        "web/my_cases.html",
        found=found,
        first=(current - 1) * size + 1,
        last_shown=(current - 1) * size + len(found.rows),
        pages=[
            (n, link("/my-cases", kept, page=n) if n else None) for n in pagination(current, last)
        ],
        current=current,
        previous=link("/my-cases", kept, page=current - 1) if 1 < current <= last else None,
        next=link("/my-cases", kept, page=current + 1) if current < last else None,
        **context,
    )


# --- a case ------------------------------------------------------------------------


def _case_page(
    request: Request,
    reference: str,
    viewer: Viewer,
    *,
    status_code: int = 200,
    banner: str | None = None,
    error: str | None = None,
    failed: str | None = None,
    sent: ImmutableMultiDict[str, str] | None = None,
    changed: bool = False,
) -> Response:
    """The case as an officer on it sees it; the view recorded in the audit (`case show`)."""
    state = console(request)
    services: Services = state.services
    with db(request) as session:
        held = _standing(session, viewer, reference)
    detail = access.show_case(
        services.engine, reference, services.calendar, viewer.actor, now=state.clock()
    )
    case = detail.case
    with db(request) as session:
        downloadable = {a.id for a in session.exec(_downloadable(case.id))}
    closed = case.status == CaseStatus.CLOSED
    return page(
        request,
        "web/my_case.html",
        status_code=status_code,
        title=("Error: " if error else "") + f"{case.reference} {case.subject}",
        d=detail,
        c=case,
        fields=views.summary(detail, services.calendar),
        note_of=views.attachment_note,
        downloadable=downloadable,
        version=records.version_of(case),
        lead=Standing.LEAD in held,
        may_respond=allows(held, Action.RESPOND) and not closed,
        may_extend=allows(held, Action.EXTEND)
        and case.status in (CaseStatus.NEW, CaseStatus.IN_PROGRESS),
        may_note=allows(held, Action.NOTE) and not closed,
        may_contribute=allows(held, Action.CONTRIBUTE) and not closed,
        closed=closed,
        extend_most=EXTEND_MOST_DAYS,
        banner=banner,
        error=error,
        failed=failed,
        sent=sent or ImmutableMultiDict(),
        changed=changed,
        status_tags=STATUS_TAGS,
    )


def _downloadable(case_id: int | None) -> Any:
    """The files an officer may download: kept ones, never one held back from officers."""
    return coordinator.kept_attachments(case_id).where(col(Attachment.held_reason).is_(None))


@pages.get("/my-cases/{reference}", Role.OFFICER)
def show(
    request: Request,
    reference: str,
    viewer: Annotated[Viewer, Depends(current_viewer)],
    done: str | None = None,
) -> Response:
    return _case_page(request, reference, viewer, banner=BANNERS.get(done or ""))


@pages.get("/my-cases/{reference}/attachments/{attachment_id}", Role.OFFICER, audited=True)
def download(
    request: Request,
    reference: str,
    attachment_id: AttachmentId,
    viewer: Annotated[Viewer, Depends(current_viewer)],
) -> Response:
    """One of the case's files, as a download (an event and an audit record); a file held
    back from officers, or any other id, is not found."""
    with db(request) as session:
        _standing(session, viewer, reference)
        case = session.exec(select(Case).where(Case.reference == reference.strip().upper())).one()
        allowed = session.exec(_downloadable(case.id).where(Attachment.id == attachment_id)).first()
    if allowed is None:
        raise HTTPException(status_code=404)
    try:
        taken = coordinator.take_attachment(
            console(request).services, reference, attachment_id, actor=viewer.actor
        )
    except UserError:
        raise HTTPException(status_code=404) from None
    return file_download(taken)


# --- the answers ---------------------------------------------------------------------

# An answer: (services, reference, form, officer's id, actor) -> the banner's word.
Answer = Callable[[Services, str, FormData, int, str], str]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _uploads(form: FormData) -> list[coordinator.Upload]:
    return [
        coordinator.Upload(f.filename or "", f.file.read(), f.filename or "")
        for f in form.getlist("files")
        if isinstance(f, UploadFile) and f.filename
    ]


def _respond(services: Services, ref: str, form: FormData, officer_id: int, actor: str) -> str:
    kind = _text(form, "answer")
    if kind not in officer_actions.ANSWERS:
        raise UserError("Choose whether this is the response or a holding reply")
    officer_actions.respond(
        services,
        ref,
        _text(form, "text"),
        _uploads(form),
        officer_id=officer_id,
        actor=actor,
        kind=kind,
    )
    return kind


def _extend(services: Services, ref: str, form: FormData, officer_id: int, actor: str) -> str:
    days = _text(form, "days").strip()
    if not days.isdigit():
        raise UserError("Enter the working days to add as a whole number, like 5")
    officer_actions.respond(
        services,
        ref,
        _text(form, "text"),
        officer_id=officer_id,
        actor=actor,
        kind="holding",
        extend_days=int(days),
        extend_reason=_text(form, "reason"),
    )
    return "extended"


def _note(services: Services, ref: str, form: FormData, officer_id: int, actor: str) -> str:
    officer_actions.add_note(services, ref, _text(form, "text"), officer_id=officer_id, actor=actor)
    return "noted"


def _contribute(services: Services, ref: str, form: FormData, officer_id: int, actor: str) -> str:
    officer_actions.contribute(
        services, ref, _text(form, "text"), _uploads(form), officer_id=officer_id, actor=actor
    )
    return "contributed"


ANSWERS: dict[str, Answer] = {
    "respond": _respond,
    "extend": _extend,
    "note": _note,
    "contribute": _contribute,
}


def _act(request: Request, reference: str, viewer: Viewer, name: str, form: FormData) -> Response:
    services: Services = console(request).services
    with db(request) as session:
        _standing(session, viewer, reference)  # not on the case: 404 before anything
    sent = ImmutableMultiDict(
        [(k, v) for k, v in form.multi_items() if isinstance(v, str) and k != "csrf"]
    )
    version = _text(form, "version")
    assert viewer.person_id is not None
    try:
        if not version:
            raise UserError("The form did not say which version of the case it showed; reload it")
        with records.expecting(reference, version, zone=services.calendar.zone):
            done = ANSWERS[name](services, reference, form, viewer.person_id, viewer.actor.shown)
    except officer_actions.NotOnCase:
        raise HTTPException(status_code=404) from None
    except records.CaseChanged as exc:
        return _case_page(
            request,
            reference,
            viewer,
            status_code=409,
            error=str(exc),
            failed=name,
            sent=sent,
            changed=True,
        )
    except officer_actions.NotAllowed as exc:
        return _case_page(
            request, reference, viewer, status_code=403, error=str(exc), failed=name, sent=sent
        )
    except UserError as exc:
        return _case_page(
            request, reference, viewer, status_code=400, error=str(exc), failed=name, sent=sent
        )
    target = quote(reference.strip().upper(), safe="")
    return RedirectResponse(f"/my-cases/{target}?done={done}", status_code=303)


pages.actions("/my-cases/{reference}/{action}", Role.OFFICER, ANSWERS, _act, prefix="my_case")
