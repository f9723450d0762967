"""Who is asking, and may they: every route declares the role it needs (`Pages.get/post`),
so one test can call every route as every role (tests/web/test_roles.py).

A request's viewer is read from its session cookie at every request, with their roles
from the directory (signin/roles.py). Forms carry a CSRF token: the session's, or before
sign-in a random one in a cookie of its own (double submit), so even the sign-in form
cannot be posted from another site.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from mailbridge.privacy.audit import Actor, Channel
from mailbridge.services import Services
from mailbridge.signin import sessions
from mailbridge.signin.roles import Role, roles_of
from mailbridge.store.db import transaction
from mailbridge.store.models import Person

SESSION_COOKIE = "mailbridge_session"
CSRF_COOKIE = "mailbridge_csrf"
CSRF_FIELD = "csrf"
ROLE_KEY = "x-mailbridge-role"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whoever sent this request: a signed-in person, or nobody (person_id None)."""

    person_id: int | None
    name: str
    email: str
    roles: frozenset[Role]
    csrf: str
    client: str
    token: str | None = None  # the session cookie, to end it

    @property
    def signed_in(self) -> bool:
        return self.person_id is not None

    @property
    def actor(self) -> Actor:
        """Who a case's events and the audit name for this person's actions."""
        return Actor(self.email, Channel.WEB, self.client, self.person_id)


class SignInNeeded(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    pass


class BadForm(Exception):
    pass


def console(request: Request) -> Any:
    """The app's shared state (web/app.py Console)."""
    return request.app.state.console


def client_of(request: Request) -> str:
    """The client's address (after a trusted proxy's X-Forwarded-For, see `mailbridge web`)."""
    return request.client.host if request.client else ""


def current_viewer(request: Request) -> Viewer:
    cached = getattr(request.state, "viewer", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    state = console(request)
    services: Services = state.services
    token = request.cookies.get(SESSION_COOKIE)
    client = client_of(request)
    viewer = Viewer(None, "", "", frozenset(), request.state.csrf_cookie, client)
    if token:
        now: datetime = state.clock()
        with transaction(services.engine) as session:
            row = sessions.live(session, token, now)
            person = session.get(Person, row.person_id) if row else None
            roles = roles_of(person)
            web = services.config.web
            if (
                row is not None
                and person is not None
                and roles
                and sessions.conforms(session, row, person, web, now)
            ):
                viewer = Viewer(
                    person.id, person.name, person.email, roles, row.csrf, client, token
                )
            elif row is not None:  # removed from the directory, or no longer kept: it ends
                sessions.end(session, token)
    request.state.viewer = viewer
    return viewer


def _guard(role: Role) -> Callable[..., Viewer]:
    def guard(request: Request, viewer: Viewer = Depends(current_viewer)) -> Viewer:  # noqa: B008
        if role == Role.PUBLIC:
            return viewer
        if not viewer.signed_in:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInNeeded(target)
        if role not in viewer.roles:
            raise Forbidden()
        return viewer

    return guard


async def _check_csrf(request: Request, viewer: Viewer = Depends(current_viewer)) -> None:  # noqa: B008
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not viewer.csrf or not hmac.compare_digest(sent, viewer.csrf):
        raise BadForm()


def _refuse_cross_site(request: Request) -> None:
    """Browsers say where a request came from (Sec-Fetch-Site); a cross-site one is refused.
    Without the header (an old browser, a script) it goes on: the session cookie is
    SameSite=Lax either way."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden()


NUL_REFUSED = "Remove the NUL character from what you sent and try again"


async def refuse_nul(request: Request) -> None:
    """Every route but the sign-in pages' (web/app.py): a NUL character in the address, the
    query or a form field is refused (400) before any query runs. It means nothing in a
    reference, a search or a message, and PostgreSQL refuses it in text (a 500 otherwise)."""
    sent = [request.url.path, *request.query_params.values()]
    kind = request.headers.get("content-type", "")
    if request.method == "POST" and kind.startswith(
        ("multipart/form-data", "application/x-www-form-urlencoded")
    ):
        form = await request.form()  # kept on the request: routes read this same form
        sent += [v for v in form.values() if isinstance(v, str)]
    if any("\x00" in text for text in sent):
        raise HTTPException(400, NUL_REFUSED)


# A row id in a URL: at most what the database's INTEGER holds (a larger one is a 400,
# not the database's overflow as a 500).
AttachmentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


# What a case action's route runs: (request, reference, viewer, action name, form) -> page.
FormAction = Callable[[Request, str, "Viewer", str, FormData], Response]


class Pages:
    """A router whose every route names its role; a POST checks the CSRF token first."""

    def __init__(self) -> None:
        self.router = APIRouter()

    def get(
        self, path: str, role: Role, *, audited: bool = False, **options: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """`audited`: a GET that writes an audit record in the viewer's name (a download):
        only started from the console itself, never by another site's link or image."""
        if audited:
            options.setdefault("dependencies", []).append(Depends(_refuse_cross_site))
        return self._route("GET", path, role, options)

    def post(self, path: str, role: Role, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        return self._route("POST", path, role, options)

    def actions(
        self, path: str, role: Role, names: Iterable[str], act: FormAction, *, prefix: str
    ) -> None:
        """One POST route per action on a case, `{action}` in `path` naming it: the form
        read whole (its files too), `act(request, reference, viewer, name, form)` run in a
        worker thread (it waits on the database), the form's files closed after."""
        for name in names:
            self._action(path.replace("{action}", name), role, name, act, prefix)

    def _action(self, path: str, role: Role, name: str, act: FormAction, prefix: str) -> None:
        async def endpoint(
            request: Request, reference: str, viewer: Annotated[Viewer, Depends(current_viewer)]
        ) -> Response:
            form = await request.form()
            try:
                return await run_in_threadpool(act, request, reference, viewer, name, form)
            finally:
                await form.close()

        endpoint.__name__ = f"{prefix}_{name}"
        self.post(path, role)(endpoint)

    def _route(
        self, method: str, path: str, role: Role, options: dict[str, Any]
    ) -> Callable[[Callable[..., Any]], Any]:
        def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
            checks = [Depends(_guard(role)), *options.pop("dependencies", [])]
            if method == "POST":
                checks.append(Depends(_check_csrf))
            options.setdefault("response_class", HTMLResponse)
            self.router.add_api_route(
                path,
                endpoint,
                methods=[method],
                dependencies=checks,
                openapi_extra={ROLE_KEY: role.value},
                **options,
            )
            return endpoint

        return register


def sign_in_url(next_path: str) -> str:
    return f"/sign-in?next={quote(next_path, safe='/')}" if next_path != "/" else "/sign-in"


def db(request: Request) -> Session:
    """A read-only session for a page (actions open their own transaction)."""
    return Session(console(request).services.engine)
