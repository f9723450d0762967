"""Signing in and out: the sign-in page (email link and SSO), the link's landing page, the
SSO callback. Each sign-in, failed sign-in and sign-out is an audit record."""

from __future__ import annotations

import logging
from typing import Annotated

from authlib.integrations.base_client import OAuthError
from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session
from starlette.responses import Response

from mailbridge.cases.directory import identify
from mailbridge.delivery.wake import ring_courier
from mailbridge.errors import UserError
from mailbridge.privacy import audit
from mailbridge.privacy.audit import Actor, Channel
from mailbridge.signin import links, sessions
from mailbridge.signin.roles import Role, roles_of
from mailbridge.store.db import transaction
from mailbridge.store.models import Person
from mailbridge.web.render import page
from mailbridge.web.routing import (
    SESSION_COOKIE,
    Pages,
    Viewer,
    client_of,
    console,
    current_viewer,
)

log = logging.getLogger(__name__)
pages = Pages()
ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def _form(request: Request, *, status_code: int = 200, **context: object) -> Response:
    state = console(request)
    context.setdefault("address", "")
    context.setdefault("error", None)
    context.setdefault("notice", None)
    context.setdefault("next_path", links.safe_next(request.query_params.get("next")))
    return page(
        request,
        "web/sign_in.html",
        status_code=status_code,
        sso_label=state.sso.label if state.sso else None,
        email_links=state.services.config.web.email_links,
        **context,
    )


@pages.get("/sign-in", Role.PUBLIC)
def sign_in(request: Request, viewer: ViewerDep) -> Response:
    if viewer.signed_in:
        return RedirectResponse(links.safe_next(request.query_params.get("next")), 303)
    notice = "You have signed out." if request.query_params.get("out") else None
    return _form(request, notice=notice)


@pages.post("/sign-in/link", Role.PUBLIC)
def ask_for_link(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    keep: Annotated[str, Form(max_length=10)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "/",
) -> Response:
    state = console(request)
    if not state.services.config.web.email_links:
        return _form(request, status_code=400, error="Sign in with single sign-on.")
    try:
        with transaction(state.services.engine) as session:
            asked = links.request_link(
                session,
                state.services,
                state.key,
                address=email,
                client=client_of(request),
                keep=bool(keep),
                next_path=next_path,
                now=state.clock(),
            )
    except UserError as exc:
        return _form(
            request,
            status_code=400,
            error=str(exc),
            address=email[:254],
            next_path=links.safe_next(next_path),
        )
    log.info("sign-in link asked for", extra={"outcome": asked.why})
    if asked.sent:
        ring_courier(state.services.config)
    return page(
        request,
        "web/check_email.html",
        address=email.strip()[:254],
        minutes=state.services.config.web.link_minutes,
    )


@pages.get("/sign-in/link", Role.PUBLIC)
def open_link(request: Request, token: str = "") -> Response:
    state = console(request)
    try:
        links.check(state.key, token[:1000], state.services.config.web.link_minutes)
    except links.LinkRefused as refused:
        return _form(request, status_code=400, error=str(refused))
    return page(request, "web/link_continue.html", token=token)


@pages.post("/sign-in/link/use", Role.PUBLIC)
def use_link(request: Request, token: Annotated[str, Form(max_length=1000)] = "") -> Response:
    state = console(request)
    now = state.clock()
    client = client_of(request)
    with transaction(state.services.engine) as session:
        try:
            link = links.redeem(
                session, state.key, token, minutes=state.services.config.web.link_minutes, now=now
            )
        except links.LinkRefused as refused:
            refusal = str(refused)
        else:
            person = session.get(Person, link.person_id)
            if person is not None and roles_of(person):
                return _begin(
                    request, session, person, "link", keep=link.keep, next_path=link.next_path
                )
            refusal = "Your account can no longer sign in. Ask the Member Support Team."
    with transaction(state.services.engine) as session:
        audit.record(
            session,
            Actor("unknown", Channel.WEB, client),
            "sign-in failed",
            detail=f"email link: {refusal}",
        )
    return _form(request, status_code=400, error=refusal)


@pages.post("/sign-in/sso", Role.PUBLIC)
async def start_sso(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    keep: Annotated[str, Form(max_length=10)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=500)] = "/",
) -> Response:
    state = console(request)
    if state.sso is None:
        return _form(request, status_code=400, error="Single sign-on is not set up here.")
    request.session["keep"] = bool(keep)
    request.session["next"] = links.safe_next(next_path)
    hint = {"login_hint": email.strip()} if "@" in email else {}
    try:
        sent = await state.sso.client.authorize_redirect(request, state.sso.redirect_uri, **hint)
        # 303, as after every form: the browser follows with a GET, never a re-POST.
        sent.status_code = 303
        return sent  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - the provider is away: say so, in one line
        log.warning("single sign-on provider unreachable", extra={"error": str(exc)[:300]})
        return _form(
            request,
            status_code=502,
            error="Single sign-on is not answering just now. Try again in a few "
            "minutes, or ask for an email link.",
        )


@pages.get("/sign-in/sso/callback", Role.PUBLIC)
async def sso_callback(request: Request) -> Response:
    state = console(request)
    if state.sso is None:
        return _form(request, status_code=400, error="Single sign-on is not set up here.")
    client = client_of(request)
    try:
        token = await state.sso.client.authorize_access_token(request)
    except (OAuthError, KeyError, ValueError) as exc:
        return _sso_refused(request, client, "unknown", f"the provider refused: {exc}"[:300])
    claims = dict(token.get("userinfo") or {})
    address = state.sso.address(claims)
    keep = bool(request.session.pop("keep", False))
    next_path = links.safe_next(request.session.pop("next", "/"))
    if address is None:
        return _sso_refused(request, client, "unknown", f"no {state.sso.claim} claim")
    return _finish_sso(request, address, client, keep, next_path)


def _finish_sso(
    request: Request, address: str, client: str, keep: bool, next_path: str
) -> Response:
    state = console(request)
    with transaction(state.services.engine) as session:
        who = identify(session, address)
        person = session.get(Person, who.person_id) if who.person_id else None
        if person is not None and roles_of(person):
            return _begin(request, session, person, "sso", keep=keep, next_path=next_path)
    return _sso_refused(request, client, address, "not in the directory")


def _sso_refused(request: Request, client: str, who: str, why: str) -> Response:
    state = console(request)
    # Both may come from the query string (?error_description=): one printable line.
    who, why = (
        "".join(char if char.isprintable() else " " for char in text)[:300] for text in (who, why)
    )
    with transaction(state.services.engine) as session:
        audit.record(
            session,
            Actor(who, Channel.WEB, client),
            "sign-in failed",
            detail=f"single sign-on: {why}",
        )
    return _form(
        request,
        status_code=403,
        error="You signed in, but your account is not one this service knows. Ask the "
        "Member Support Team to add your council email address.",
    )


METHODS = {"link": "email link", "sso": "single sign-on"}


def _begin(
    request: Request, session: Session, person: Person, method: str, *, keep: bool, next_path: str
) -> Response:
    """Sign `person` in, in the caller's transaction: the session, its audit record and
    the cookie."""
    state = console(request)
    client = client_of(request)
    sessions.end(session, request.cookies.get(SESSION_COOKIE))  # one session per browser
    started = sessions.start(
        session,
        person,
        state.services.config.web,
        method=method,
        client=client,
        keep=keep,
        now=state.clock(),
    )
    actor = Actor(person.email, Channel.WEB, client, person.id)
    audit.record(session, actor, "sign-in", detail=METHODS[method])
    response = RedirectResponse(links.safe_next(next_path), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        started.token,
        max_age=int((started.expires_at - console(request).clock()).total_seconds())
        if started.keep
        else None,
        path="/",
        secure=console(request).secure,
        httponly=True,
        samesite="lax",
    )
    return response


@pages.post("/sign-out", Role.SIGNED_IN)
def sign_out(request: Request, viewer: ViewerDep) -> Response:
    state = console(request)
    with transaction(state.services.engine) as session:
        sessions.end(session, viewer.token)
        audit.record(session, viewer.actor, "sign-out")
    response = RedirectResponse("/sign-in?out=1", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=state.secure, httponly=True, samesite="lax"
    )
    return response
