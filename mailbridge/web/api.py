"""The JSON API for other council systems: `/api/v1/`, documented by its own OpenAPI page
(`/api/v1/docs`, `/api/v1/openapi.json`); reference in docs/api.md.

A caller is a bearer token (`mailbridge api-tokens create`), never a person's session: no
cookie is read or set here and no CSRF token is asked for. Every route declares the role it
needs (Role.API_READ or API_WRITE, read by the role matrix test); a read token asking for a
write is refused (403), a missing, unknown or revoked token is 401. What a token may do to a
case is asked of cases/permissions.py like every other door, and every change goes through
the function the command line, the console and the email path call, in its one transaction,
with the token's name as the actor. Every call a token makes is in the audit (channel api).

Errors are JSON, `{"error": "one line saying what to do"}`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mailbridge.cases import coordinator, directory, submissions
from mailbridge.cases.permissions import Action, Standing, allows, api_standing
from mailbridge.console import api_views
from mailbridge.console.filters import FilterErrors, from_query
from mailbridge.errors import UserError
from mailbridge.privacy import access, audit
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.services import Services
from mailbridge.signin import api_tokens
from mailbridge.signin.roles import Role
from mailbridge.store.db import transaction
from mailbridge.store.models import Case, PersonKind
from mailbridge.web.api_models import (
    LIST_PARAMETERS,
    CaseIn,
    CaseOut,
    CasePage,
    ErrorOut,
    FileIn,
    Noted,
    Opened,
    Responded,
    TextIn,
)
from mailbridge.web.headers import BodyLimit
from mailbridge.web.routing import ROLE_KEY, client_of, console, refuse_nul

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MOST_PER_PAGE = 100
PER_PAGE = 50
# A call's body is JSON: a new case's files come base64 in it (a third larger than the
# files themselves), and nothing else needs more than a little text.
MAX_BODY = 10 * 1024 * 1024
TITLE = "mailbridge JSON API"


class ApiError(Exception):
    """A refusal, answered as `{"error": text}` with its status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def is_api(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def answer(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


def invalid(exc: RequestValidationError) -> str:
    """A body or parameter FastAPI refused, in one line naming each field."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        problems.append(f"{where or 'body'}: {error.get('msg', 'not understood')}")
    return "; ".join(problems) + " (see /api/v1/docs)"


def http_text(exc: HTTPException) -> str:
    """What an HTTP refusal (an unknown path, a body too large) says to a calling system."""
    if exc.status_code == 404:
        return "No such API address: see /api/v1/docs."
    if exc.status_code == 405:
        return "That method is not allowed here: see /api/v1/docs."
    return str(exc.detail)


@dataclass(frozen=True, slots=True)
class Caller:
    """The token a request came with."""

    name: str
    scope: str
    actor: Actor

    @property
    def standings(self) -> frozenset[Standing]:
        return frozenset({api_standing(self.scope)})


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")
UNKNOWN = (
    "send a live API token as 'Authorization: Bearer <token>' "
    "(ask for one to be made with `mailbridge api-tokens create`)"
)


def _record(services: Services, caller: Caller, action: str, **detail: Any) -> None:
    with transaction(services.engine) as session:
        audit.record(session, caller.actor, action, **detail)


def audit_refusal(request: Request, status: int) -> None:
    """A call refused as not understood (422), in the audit as the call it was: its method
    and path, never what it sent (an address, a filter's text)."""
    caller = getattr(request.state, "api_caller", None)
    if caller is not None and status == 422:
        detail = f"{request.method} {request.url.path}: refused ({status})"
        _record(console(request).services, caller, "api.refused", detail=detail)


def _guard(role: Role) -> Callable[..., Caller]:
    def guard(
        request: Request,
        sent: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        state = console(request)
        token = (
            api_tokens.authenticate(state.services.engine, sent.credentials, state.clock())
            if sent is not None
            else None
        )
        if token is None:
            log.info("api call refused: no live token", extra={"client": client_of(request)})
            raise ApiError(401, f"No live API token: {UNKNOWN}.")
        caller = Caller(
            token.name,
            token.scope,
            Actor(f"api:{token.name}", Channel.API, client_of(request)),
        )
        request.state.api_caller = caller  # a refusal after this is audited (`refused`)
        if role == Role.API_WRITE and api_standing(token.scope) != Standing.API_WRITE:
            _record(
                state.services,
                caller,
                "api.refused",
                detail=f"{request.method} {request.url.path}: a read token cannot write",
            )
            raise ApiError(403, "This token may only read: ask for a write token to do this.")
        return caller

    return guard


class ApiRoutes:
    """A router whose every route names its role and takes a bearer token."""

    def __init__(self) -> None:
        self.router = APIRouter(prefix=PREFIX, tags=["cases"])

    def route(
        self, method: str, path: str, role: Role, **options: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
            self.router.add_api_route(
                path,
                endpoint,
                methods=[method],
                openapi_extra={ROLE_KEY: role.value, **options.pop("openapi_extra", {})},
                responses={
                    401: {"model": ErrorOut, "description": "No live token"},
                    403: {"model": ErrorOut, "description": "A read token asked to write"},
                    404: {"model": ErrorOut, "description": "No such case"},
                    422: {"model": ErrorOut, "description": "A value not understood"},
                    **options.pop("responses", {}),
                },
                **options,
            )
            return endpoint

        return register


api = ApiRoutes()


Reader = Annotated[Caller, Depends(_guard(Role.API_READ))]
Writer = Annotated[Caller, Depends(_guard(Role.API_WRITE))]


def _limit(text: str | None) -> int:
    if text is None or not text.strip():
        return PER_PAGE
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= MOST_PER_PAGE:
        raise ApiError(422, f"limit: give a number of cases from 1 to {MOST_PER_PAGE}")
    return int(value)


@api.route(
    "GET",
    "/cases",
    Role.API_READ,
    summary="List cases",
    response_model=CasePage,
    openapi_extra={"parameters": LIST_PARAMETERS},
)
def list_cases(request: Request, caller: Reader) -> dict[str, Any]:
    """The cases the filters select, a page at a time: the web dashboard's filters
    (`status`, `service_area`, `overdue=yes`, `due_within`, `search`, ...), `sort`,
    `order`, `page`, and `limit` (at most 100, 50 unless given)."""
    state = console(request)
    services: Services = state.services
    fields = {k: v for k, v in request.query_params.items() if k != "limit"}
    limit = _limit(request.query_params.get("limit"))
    try:
        wanted = from_query(fields, limit=limit)
    except FilterErrors as exc:
        raise ApiError(422, "; ".join(f"{e.field}: {e.problem}" for e in exc.errors)) from None
    today = services.calendar.local_date(state.clock())
    listed = access.list_cases(
        services.engine, wanted, services.calendar, caller.actor, today=today
    )
    more = wanted.offset + len(listed.rows) < listed.total
    after = {**dict(request.query_params), "page": str(wanted.page + 1)}
    return {
        "cases": [api_views.list_item(row) for row in listed.rows],
        "page": wanted.page,
        "limit": limit,
        "total": listed.total,
        "next": f"{PREFIX}/cases?{urlencode(after)}" if more else None,
    }


def _case(services: Services, caller: Caller, reference: str, wanted: Action) -> str:
    """The case's reference as stored, once the token may do `wanted` to it; else 404."""
    with Session(services.engine) as session:
        found = session.exec(
            select(Case.reference).where(Case.reference == reference.strip().upper())
        ).first()
    if found is None or not allows(caller.standings, wanted):
        _record(services, caller, "api.refused", detail=f"no case {reference.strip()[:40]!r}")
        raise ApiError(404, f"No case has reference {reference.strip()[:40]}: check it.")
    return found


@api.route(
    "GET", "/cases/{reference}", Role.API_READ, summary="Read one case", response_model=CaseOut
)
def read_case(request: Request, reference: str, caller: Reader) -> dict[str, Any]:
    """A case's fields, deadlines, people, messages (the enquiry, responses, chasers,
    internal notes) and events."""
    state = console(request)
    services: Services = state.services
    found = _case(services, caller, reference, Action.SEE_INTERNAL)
    detail = access.show_case(
        services.engine, found, services.calendar, caller.actor, now=state.clock()
    )
    today = services.calendar.local_date(state.clock())
    with Session(services.engine) as session:
        return api_views.case_document(session, detail, today)


def _done(result: Callable[[], Any]) -> Any:
    """The action's result; its refusal as a 422 (each problem of a new case by its field)."""
    try:
        return result()
    except submissions.Invalid as exc:
        raise ApiError(422, "; ".join(f"{p.field}: {p.text}" for p in exc.problems)) from None
    except UserError as exc:
        raise ApiError(422, str(exc)) from None


@api.route(
    "POST",
    "/cases/{reference}/responses",
    Role.API_WRITE,
    status_code=201,
    summary="Respond to the member",
    response_model=Responded,
)
def respond(request: Request, reference: str, body: TextIn, caller: Writer) -> Any:
    """Email a response to the member(s) on the case, as a coordinator's reply does
    (`mailbridge case reply`): recorded on the case and counted as a response; the case
    stays open until the coordinators complete it."""
    services: Services = console(request).services
    found = _case(services, caller, reference, Action.RESPOND)
    replied = _done(lambda: coordinator.reply(services, found, body.text, actor=caller.actor.shown))
    _record(services, caller, "api.respond", case_reference=found, detail="response queued")
    return {"reference": replied.reference, "recipients": list(replied.recipients)}


@api.route(
    "POST",
    "/cases/{reference}/notes",
    Role.API_WRITE,
    status_code=201,
    summary="Add an internal note",
    response_model=Noted,
)
def note(request: Request, reference: str, body: TextIn, caller: Writer) -> Any:
    """An internal note on the case: officers and coordinators see it; nobody is emailed."""
    services: Services = console(request).services
    found = _case(services, caller, reference, Action.NOTE)
    _done(lambda: coordinator.add_note(services, found, body.text, actor=caller.actor.shown))
    _record(services, caller, "api.note", case_reference=found, detail="internal note added")
    return {"reference": found}


# --- a new enquiry --------------------------------------------------------------------


def _member_id(services: Services, address: str) -> int:
    """The member an address belongs to in the directory, else a 422 saying so."""
    with Session(services.engine) as session:
        who = directory.identify(session, address)
    if who.person_id is None or who.kind != PersonKind.MEMBER:
        raise ApiError(
            422,
            f"member: {address.strip()[:254]} is no member's address in the directory; "
            "give the councillor's email address",
        )
    return who.person_id


def _uploads(files: list[FileIn]) -> tuple[submissions.Upload, ...]:
    found = []
    for f in files:
        try:
            data = base64.b64decode(f.content, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"attachments: {f.filename[:60]} is not base64") from None
        found.append(submissions.Upload(f.filename, data))
    return tuple(found)


@api.route(
    "POST",
    "/cases",
    Role.API_WRITE,
    status_code=201,
    summary="Open a case for a member",
    response_model=Opened,
    responses={200: {"model": Opened, "description": "Opened before, by this Idempotency-Key"}},
)
def open_case(
    request: Request,
    body: CaseIn,
    caller: Writer,
    key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Any:
    """Open an enquiry on behalf of a member, as if they had emailed it: the same case,
    deadlines, events and acknowledgement to the member (`channel` "api"). Send an
    `Idempotency-Key` header to make a retry safe: the same key finds the case it opened."""
    services: Services = console(request).services
    submission = submissions.Submission(
        member_id=_member_id(services, body.member),
        subject=body.subject,
        details=body.details,
        service_area=body.service_area,
        resident_name=body.resident_name,
        resident_address=body.resident_address,
        resident_reference=body.resident_reference,
        preferred_contact=body.preferred_contact,
        uploads=_uploads(body.attachments),
        token=f"api:{caller.name}:{key}" if key else None,
    )
    opened = _done(lambda: submissions.open_enquiry(services, submission, actor=caller.actor))
    detail = "opened again by its Idempotency-Key" if opened.repeated else "case opened"
    _record(services, caller, "api.open", case_reference=opened.reference, detail=detail)
    return JSONResponse(
        {
            "reference": opened.reference,
            "response_due": opened.response_due.isoformat(),
            "repeated": opened.repeated,
        },
        status_code=200 if opened.repeated else 201,
    )


# --- the description and its page -----------------------------------------------------


def openapi_document(app_title: str) -> dict[str, Any]:
    return get_openapi(
        title=TITLE,
        version="1",
        description=f"{app_title}: cases for other council systems. See docs/api.md.",
        routes=api.router.routes,
    )


# The docs page's own policy: Swagger UI (vendored in static/swagger-ui/, started by
# static/swagger-init.js) from this site only, no inline script, nothing from elsewhere.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def install(app: FastAPI, title: str) -> None:
    """The API's routes, its description and docs page, its errors as JSON and its cap on a
    call's body."""
    app.include_router(api.router, dependencies=[Depends(refuse_nul)])
    document = openapi_document(title)
    docs = APIRouter()

    def description() -> JSONResponse:
        return JSONResponse(document)

    def page(request: Request) -> Response:
        templates = console(request).templates
        text = templates.get_template("web/api_docs.html").render(
            title=TITLE, openapi_url=f"{PREFIX}/openapi.json"
        )
        return HTMLResponse(text, headers={"Content-Security-Policy": DOCS_CSP})

    for path, endpoint in (("/openapi.json", description), ("/docs", page)):
        docs.add_api_route(
            PREFIX + path,
            endpoint,
            methods=["GET"],
            include_in_schema=False,
            openapi_extra={ROLE_KEY: Role.PUBLIC.value},
        )
    app.include_router(docs)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> Response:
        await run_in_threadpool(audit_refusal, request, exc.status)
        return answer(exc.status, exc.text)

    app.add_middleware(ApiBodyLimit)


class ApiBodyLimit:
    """The API's own cap on a body (MAX_BODY), inside the console's larger one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limited = BodyLimit(app, limit=MAX_BODY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        inner = self.limited if path.startswith(PREFIX + "/") else self.app
        await inner(scope, receive, send)
