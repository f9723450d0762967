"""Pages from Jinja2 templates under templates/web/ (overridable from [templates] directory,
like the emails), always autoescaped, with what every page needs: who is signed in, the CSRF
token, the council's name and the navigation."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from starlette.responses import Response

from mailbridge.delivery.templating import shipped_templates
from mailbridge.signin.roles import Role


def _long_date(value: date | datetime | None) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}" if value else ""


def environment(override_dir: Path | None) -> Jinja2Templates:
    loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
    loaders.append(FileSystemLoader(str(shipped_templates())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["longdate"] = _long_date
    return Jinja2Templates(env=env)


# The service navigation: (label, path, role needed); a page marks its own as current.
NAVIGATION = (
    ("Dashboard", "/", Role.COORDINATOR),
    ("Quarantine", "/quarantine", Role.COORDINATOR),
    ("Report", "/report", Role.COORDINATOR),
    ("My cases", "/my-cases", Role.OFFICER),
    ("New enquiry", "/enquiries/new", Role.COUNCILLOR),
)


def page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    from mailbridge.web.routing import current_viewer

    state = request.app.state.console
    viewer = current_viewer(request)
    path = request.url.path
    nav = [
        (label, href, href == path or (href != "/" and path.startswith(href)))
        for label, href, role in NAVIGATION
        if role in viewer.roles
    ]
    return state.templates.TemplateResponse(
        request,
        name,
        {
            "viewer": viewer,
            "csrf": viewer.csrf,
            "council": state.services.config.council.name,
            "navigation": nav,
            **context,
        },
        status_code=status_code,
    )
