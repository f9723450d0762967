"""A case's page for coordinators: everything `mailbridge case show` shows, its attachments
to download, and the coordinators' actions on it.

Each action is a form posted to /cases/{reference}/{action} that calls the function the
command line calls (cases/assignment.py, cases/coordinator.py), in that function's one
transaction, with the signed-in person as the actor. Every form carries the version of the
case the page showed (`records.version_of`): the action runs inside `records.expecting`, so
a case that changed since the page was loaded is refused, with nothing done, instead of
being overwritten. A refusal re-renders the page with an error summary and the person's
input kept; success redirects back (303) with a banner chosen from a fixed set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData, ImmutableMultiDict, UploadFile
from starlette.responses import Response

from mailbridge.cases import assignment, coordinator, records
from mailbridge.console import views
from mailbridge.errors import UserError
from mailbridge.privacy import access
from mailbridge.services import Services
from mailbridge.signin.roles import Role
from mailbridge.store.models import CaseStatus, PersonKind
from mailbridge.web.render import page
from mailbridge.web.routing import AttachmentId, Pages, Viewer, console, current_viewer, db

pages = Pages()

# The banner after each action, by the word in ?done= (never text from the URL itself).
BANNERS = {
    "assigned": "Officers assigned: the enquiry is queued for them",
    "reassigned": "Officers changed",
    "saved": "Case details saved",
    "unchanged": "Nothing changed: the details were already so",
    "status": "Status changed",
    "paused": "The case's clock is paused",
    "resumed": "The case's clock is running again",
    "extended": "Deadline extended",
    "noted": "Note added (not sent to anyone)",
    "replied": "Reply queued for the member",
    "reopened": "Case reopened",
    "linked": "Member added to the case",
    "merged": "Case merged and closed",
    "converted": "Case converted and closed",
}

# Stored types a browser would run or render as a page: served as plain bytes instead.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
    }
)
_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def served_type(stored: str) -> str:
    """The Content-Type a download is served with: the stored one, unless a browser could
    run or render it (or it is no plain type at all)."""
    kind = stored.split(";", 1)[0].strip().lower()
    if not _TYPE.match(kind) or kind in ACTIVE_TYPES:
        return "application/octet-stream"
    return kind


def disposition(filename: str) -> str:
    """`attachment`, never inline, with an ASCII name and the exact one (RFC 6266/5987)."""
    plain = re.sub(r"[^A-Za-z0-9 ._()-]", "_", filename).strip() or "attachment"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_download(taken: coordinator.Taken) -> Response:
    """A case's file as the browser gets it: saved, never shown, and never cached."""
    return Response(
        taken.data,
        media_type=served_type(taken.content_type),
        headers={"Content-Disposition": disposition(taken.filename), "Cache-Control": "no-store"},
    )


# --- the page -------------------------------------------------------------------------


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
    """The page, its view recorded in the audit (`access.show_case`, as `case show`)."""
    state = console(request)
    services: Services = state.services
    try:
        detail = access.show_case(
            services.engine, reference, services.calendar, viewer.actor, now=state.clock()
        )
    except UserError:
        raise HTTPException(status_code=404) from None
    case = detail.case
    with db(request) as session:
        officers = views.choices(session, PersonKind.OFFICER)
        members = [
            p for p in views.choices(session, PersonKind.MEMBER) if p.person_id != case.member_id
        ]
        downloadable = {a.id for a in session.exec(coordinator.kept_attachments(case.id))}
    additional = [p.email for p, role in detail.officers if role != "lead"]
    return page(
        request,
        "web/case.html",
        status_code=status_code,
        title=("Error: " if error else "") + f"{case.reference} {case.subject}",
        d=detail,
        c=case,
        fields=views.summary(detail, services.calendar),
        note_of=views.attachment_note,
        downloadable=downloadable,
        version=records.version_of(case),
        officers=officers,
        additional=additional,
        additional_slots=max(3, len(additional) + 1),
        members=members,
        service_areas=[a.name for a in services.config.service_areas],
        banner=banner,
        error=error,
        failed=failed,
        sent=sent or ImmutableMultiDict(),
        changed=changed,
        closed=case.status == CaseStatus.CLOSED,
        completed=case.status == CaseStatus.COMPLETED,
        contact_methods=coordinator.CONTACT_METHODS,
        conversions=coordinator.CONVERSIONS,
    )


@pages.get("/cases/{reference}", Role.COORDINATOR)
def show(
    request: Request,
    reference: str,
    viewer: Annotated[Viewer, Depends(current_viewer)],
    done: str | None = None,
) -> Response:
    return _case_page(request, reference, viewer, banner=BANNERS.get(done or ""))


@pages.get("/cases/{reference}/attachments/{attachment_id}", Role.COORDINATOR, audited=True)
def download(
    request: Request,
    reference: str,
    attachment_id: AttachmentId,
    viewer: Annotated[Viewer, Depends(current_viewer)],
) -> Response:
    """One kept attachment of this case, as a download (an event and an audit record, as
    `case attachments --save`); any other id, this case's or not, is not found."""
    try:
        taken = coordinator.take_attachment(
            console(request).services, reference, attachment_id, actor=viewer.actor
        )
    except UserError:  # no such case, or no such kept attachment on it
        raise HTTPException(status_code=404) from None
    return file_download(taken)


# --- the actions ----------------------------------------------------------------------

# An action: (services, reference, form, actor, now) -> the banner's word.
Act = Callable[[Services, str, FormData, str, datetime], str]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _assign(reassign: bool) -> Act:
    def act(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
        also = [v for v in form.getlist("also") if isinstance(v, str) and v.strip()]
        assignment.assign(
            services,
            ref,
            _text(form, "lead"),
            also,
            actor=actor,
            reassign=reassign,
            reset_deadline=reassign and _text(form, "reset_deadline") == "yes",
            now=now,
        )
        return "reassigned" if reassign else "assigned"

    return act


def _fields(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    done = coordinator.set_fields(
        services,
        ref,
        actor=actor,
        service_area=_text(form, "service_area"),
        enquiry_type=_text(form, "enquiry_type"),
        directorate=_text(form, "directorate"),
        district=_text(form, "district"),
        preferred_contact=_text(form, "preferred_contact"),
        sensitive=_text(form, "sensitive") == "yes",
    )
    return "saved" if done.changes else "unchanged"


def _status(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.set_status(services, ref, _text(form, "status"), actor=actor)
    return "status"


def _pause(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.pause(services, ref, _text(form, "reason"), actor=actor, now=now)
    return "paused"


def _resume(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.resume(services, ref, actor=actor, now=now)
    return "resumed"


def _extend(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    days = _text(form, "days").strip()
    if not days.isdigit():
        raise UserError("Enter the working days to add as a whole number, like 5")
    coordinator.extend(services, ref, int(days), _text(form, "reason"), actor=actor, now=now)
    return "extended"


def _note(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.add_note(services, ref, _text(form, "text"), actor=actor)
    return "noted"


def _reply(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    uploads = [
        coordinator.Upload(f.filename or "", f.file.read(), f.filename or "")
        for f in form.getlist("files")
        if isinstance(f, UploadFile) and f.filename
    ]
    coordinator.reply(
        services,
        ref,
        _text(form, "text"),
        uploads,
        actor=actor,
        checked=_text(form, "checked") == "yes",
    )
    return "replied"


def _reopen(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.reopen(services, ref, _text(form, "reason") or None, actor=actor)
    return "reopened"


def _link(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.link(services, ref, _text(form, "member"), actor=actor)
    return "linked"


def _merge(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.merge(services, ref, _text(form, "into"), actor=actor)
    return "merged"


def _convert(services: Services, ref: str, form: FormData, actor: str, now: datetime) -> str:
    coordinator.convert(services, ref, _text(form, "to"), _text(form, "reason"), actor=actor)
    return "converted"


ACTIONS: dict[str, Act] = {
    "assign": _assign(reassign=False),
    "reassign": _assign(reassign=True),
    "fields": _fields,
    "status": _status,
    "pause": _pause,
    "resume": _resume,
    "extend": _extend,
    "note": _note,
    "reply": _reply,
    "reopen": _reopen,
    "link": _link,
    "merge": _merge,
    "convert": _convert,
}


def _act(request: Request, reference: str, viewer: Viewer, name: str, form: FormData) -> Response:
    state = console(request)
    services: Services = state.services
    sent = ImmutableMultiDict(
        [(k, v) for k, v in form.multi_items() if isinstance(v, str) and k != "csrf"]
    )
    version = _text(form, "version")
    try:
        if not version:
            raise UserError("The form did not say which version of the case it showed; reload it")
        with records.expecting(reference, version, zone=services.calendar.zone):
            done = ACTIONS[name](services, reference, form, viewer.actor.shown, state.clock())
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
    except UserError as exc:
        return _case_page(
            request, reference, viewer, status_code=400, error=str(exc), failed=name, sent=sent
        )
    target = quote(reference.strip().upper(), safe="")
    return RedirectResponse(f"/cases/{target}?done={done}", status_code=303)


pages.actions("/cases/{reference}/{action}", Role.COORDINATOR, ACTIONS, _act, prefix="case")
