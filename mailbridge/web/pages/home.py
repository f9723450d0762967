"""The first page after signing in: the coordinators' dashboard, or for anyone else a plain
page saying the console is not yet theirs (councillors and officers work by email)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from mailbridge.console.dashboard import dashboard
from mailbridge.signin.roles import Role
from mailbridge.web.render import page
from mailbridge.web.routing import Pages, Viewer, console, current_viewer, db

pages = Pages()


@pages.get("/", Role.SIGNED_IN)
def home(request: Request, viewer: Annotated[Viewer, Depends(current_viewer)]) -> Response:
    if Role.COORDINATOR not in viewer.roles:
        return page(request, "web/not_available.html")
    state = console(request)
    services = state.services
    with db(request) as session:
        board = dashboard(session, services.calendar, services.calendar.local_date(state.clock()))
    return page(request, "web/dashboard.html", board=board)
