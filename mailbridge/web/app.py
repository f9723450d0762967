"""The console's ASGI application: `create_app(config, engine)` for `mailbridge web`, the
tests and the benchmark alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from mailbridge.cases.directory import adopt_coordinators
from mailbridge.config import Config
from mailbridge.errors import UserError
from mailbridge.services import Services
from mailbridge.signin.links import console_key
from mailbridge.store.models import utcnow
from mailbridge.web import api
from mailbridge.web.headers import BodyLimit, SecurityHeaders, origin, policy
from mailbridge.web.render import environment, page
from mailbridge.web.routing import BadForm, Forbidden, SignInNeeded, refuse_nul, sign_in_url

log = logging.getLogger(__name__)


@dataclass
class Console:
    """What every request shares."""

    services: Services
    key: bytes  # signs sign-in links
    templates: object  # Jinja2Templates
    clock: Callable[[], datetime]
    secure: bool  # cookies marked Secure
    sso: object | None = None  # signin.sso.Sso when [web.sso] is set


def secure_cookies(base_url: str) -> bool:
    """Secure cookies unless the console is served as plain http on loopback (the demo)."""
    parts = urlsplit(base_url)
    loopback = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    return not (parts.scheme == "http" and loopback)


def create_app(
    config: Config, engine: Engine, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    from mailbridge.web.pages import (
        case,
        enquiries,
        enquiry_form,
        export,
        home,
        officer,
        quarantine,
        report,
        signin,
    )

    services = Services.build(config, engine)
    adopt_coordinators(engine, config.coordinators)
    secure = secure_cookies(config.web.base_url)
    sso = None
    if config.web.sso is not None:
        from mailbridge.signin.sso import Sso

        sso = Sso(config)
    state = Console(
        services=services,
        key=console_key(config),
        templates=environment(config.templates.directory),
        clock=clock,
        secure=secure,
        sso=sso,
    )
    app = FastAPI(
        title=f"{config.council.name} member enquiries",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = state
    app.include_router(signin.pages.router)  # its `next` takes any text, and handles a NUL
    for area in (home, case, enquiry_form, enquiries, export, quarantine, report, officer):
        app.include_router(area.pages.router, dependencies=[Depends(refuse_nul)])
    api.install(app, app.title)
    app.mount("/static", StaticFiles(directory=str(static_folder())), name="static")
    targets = [origin(sso.authorize_origin)] if sso else []
    if sso is not None:
        # Authlib keeps the round trip's state, nonce and PKCE verifier here: signed, for
        # ten minutes, nothing else in it.
        app.add_middleware(
            SessionMiddleware,
            secret_key=state.key.decode(),
            session_cookie="mailbridge_sso",
            max_age=600,
            same_site="lax",
            https_only=secure,
        )
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, csp=policy(targets), secure_cookies=secure)
    if config.web.trusted_proxies:
        # Outermost: the client's address and scheme are the proxy's word only when the
        # proxy is one of ours; anyone else's X-Forwarded-For is ignored.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=config.web.trusted_proxies)
    _answers(app)
    return app


def static_folder() -> Path:
    return Path(str(files("mailbridge.web"))) / "static"


# (status, title, text) of the page each refusal gets.
REFUSALS: dict[type[Exception], tuple[int, str, str]] = {
    Forbidden: (
        403,
        "You cannot see this page",
        "Your account does not give you access to this page. If you need it, ask the Member "
        "Support Team.",
    ),
    BadForm: (
        400,
        "Your form had expired",
        "The form was out of date or came from another site, so nothing was done. Go back, "
        "reload the page and try again.",
    ),
    RequestValidationError: (
        400,
        "That could not be done",
        "The page was asked for with values it does not understand. Go back and try again.",
    ),
}


def _answers(app: FastAPI) -> None:
    """How the console answers what a route did not: one clear page each, never a trace."""

    async def refused(request: Request, exc: Exception) -> Response:
        status, title, text = REFUSALS[type(exc)]
        if isinstance(exc, RequestValidationError) and api.is_api(request):
            await run_in_threadpool(api.audit_refusal, request, 422)
            return api.answer(422, api.invalid(exc))
        return page(request, "web/error.html", status_code=status, title=title, text=text)

    for kind in REFUSALS:
        app.add_exception_handler(kind, refused)

    @app.exception_handler(SignInNeeded)
    async def sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(sign_in_url(exc.next_path), status_code=303)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        if api.is_api(request):
            return api.answer(422, str(exc))
        return page(
            request,
            "web/error.html",
            status_code=400,
            title="That could not be done",
            text=str(exc),
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if api.is_api(request):
            return api.answer(exc.status_code, api.http_text(exc))
        if exc.status_code == 404:
            title, text = "Page not found", "If you typed the web address, check it is correct."
        else:
            title, text = "That could not be done", str(exc.detail)
        return page(request, "web/error.html", status_code=exc.status_code, title=title, text=text)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("web request failed", extra={"path": request.url.path})
        if api.is_api(request):
            return api.answer(500, "The service failed; try again later. It has been logged.")
        return page(
            request,
            "web/error.html",
            status_code=500,
            title="Sorry, there is a problem with the service",
            text="Try again later. The problem has been logged.",
        )
