"""The on-line enquiry form: a councillor (or their delegate, for the member they act for)
raises an enquiry in the browser, and `cases.submissions.submit` opens it exactly as the
same email would.

The form as served carries a one-use token; posting it twice (a refresh, a double click,
back and submit again) finds the case the first post opened and shows its confirmation.
A refused form is shown again with a GOV.UK error summary, what was typed kept (files
must be chosen again: browsers never refill a file input), and the same token.
Success redirects (303) to the confirmation, so a refresh there posts nothing.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from mailbridge.cases import permissions, submissions
from mailbridge.cases.permissions import Action
from mailbridge.cases.submissions import Invalid, Problem, Submission, Upload
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.signin.roles import Role
from mailbridge.store.models import Case, Person
from mailbridge.web.render import page
from mailbridge.web.routing import Pages, Viewer, console, current_viewer, db

pages = Pages()

NOT_SURE = ""  # the service area field's value for "Not sure"
TEXT_FIELDS = ("subject", "details", "resident_name", "resident_address", "resident_reference")
CONTACTS = (("email", "Email"), ("phone", "Phone"), ("letter", "Letter"))


def _member_of(request: Request, viewer: Viewer) -> Person:
    """The member the viewer raises enquiries for: themselves, or whom they are a delegate
    for (a delegate registered for nobody has no form to fill)."""
    with db(request) as session:
        person = session.get(Person, viewer.person_id)
        member_id = permissions.acting_for(person) if person else None
        member = session.get(Person, member_id) if member_id is not None else None
    if member is None:
        raise HTTPException(404)
    return member


def _form_page(
    request: Request,
    viewer: Viewer,
    *,
    token: str,
    given: dict[str, str] | None = None,
    problems: tuple[Problem, ...] = (),
    status_code: int = 200,
) -> Response:
    services: Services = console(request).services
    member = _member_of(request, viewer)
    errors: dict[str, str] = {}
    for problem in problems:
        errors.setdefault(problem.field, problem.text)
    return page(
        request,
        "web/enquiry_form.html",
        status_code=status_code,
        title=("Error: " if problems else "") + "Raise an enquiry",
        member=member,
        acting_for_other=member.id != viewer.person_id,
        areas=[a.name for a in services.config.service_areas],
        contacts=CONTACTS,
        given=given or {},
        problems=problems,
        errors=errors,
        token=token,
        max_files=submissions.MAX_FILES,
        max_mb=f"{services.config.storage.max_attachment_bytes / 1024 / 1024:g}",
    )


@pages.get("/enquiries/new", Role.COUNCILLOR)
def new_enquiry(request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Response:
    return _form_page(request, viewer, token=submissions.new_form_token())


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def _uploads(form: FormData) -> tuple[Upload, ...]:
    """The files chosen; an empty file input sends one nameless empty part, not a file."""
    found = []
    for item in form.getlist("files"):
        if isinstance(item, UploadFile) and (item.filename or item.size):
            found.append(Upload(item.filename or "", await item.read()))
    return tuple(found)


@pages.post("/enquiries/new", Role.COUNCILLOR)
async def send_enquiry(
    request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]
) -> Response:
    form = await request.form()
    try:
        member = await run_in_threadpool(_member_of, request, viewer)
        given = {
            name: _text(form, name) for name in (*TEXT_FIELDS, "service_area", "preferred_contact")
        }
        token = _text(form, "token")
        if not token:
            # An old or hand-made form: a fresh token, and the person sends it again.
            return await run_in_threadpool(
                _form_page,
                request,
                viewer,
                token=submissions.new_form_token(),
                given=given,
                problems=(Problem("form", "The form had expired: check it and send it again"),),
                status_code=400,
            )
        submission = Submission(
            member_id=member.id,  # type: ignore[arg-type]
            subject=given["subject"],
            details=given["details"],
            service_area=given["service_area"] or None,
            resident_name=given["resident_name"],
            resident_address=given["resident_address"],
            resident_reference=given["resident_reference"],
            preferred_contact=given["preferred_contact"] or None,
            uploads=await _uploads(form),
            token=token,
        )
        services: Services = console(request).services
        try:
            done = await run_in_threadpool(
                submissions.open_enquiry, services, submission, actor=viewer.actor
            )
        except Invalid as refused:
            return await run_in_threadpool(
                _form_page,
                request,
                viewer,
                token=token,
                given=given,
                problems=refused.problems,
                status_code=400,
            )
        except UserError as exc:
            problem = Problem("form", str(exc))
            return await run_in_threadpool(
                _form_page,
                request,
                viewer,
                token=submissions.new_form_token(),
                given=given,
                problems=(problem,),
                status_code=400,
            )
    finally:
        await form.close()
    target = quote(done.reference, safe="")
    return RedirectResponse(f"/enquiries/{target}/sent", status_code=303)


@pages.get("/enquiries/{reference}/sent", Role.COUNCILLOR)
def enquiry_sent(
    request: Request, reference: str, viewer: Annotated[Viewer, Depends(current_viewer)]
) -> Response:
    """The confirmation: the reference and the reply deadline, nothing of the enquiry's
    content (so showing it is no access to personal data), and 404 to anyone without a
    standing on the case, as every case page."""
    with db(request) as session:
        case = session.exec(select(Case).where(Case.reference == reference.strip().upper())).first()
        person = session.get(Person, viewer.person_id)
        if case is None or not permissions.may(session, person, case, Action.SEE):
            raise HTTPException(404)
        due = case.extended_due or case.response_due
    return page(
        request,
        "web/enquiry_sent.html",
        title="Enquiry sent",
        reference=case.reference,
        due=due,
    )
