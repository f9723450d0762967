"""The scrutiny report for a period, laid out for the panel (console/report_render.py's
panel, the same figures as `mailbridge report`), with downloads in the CLI's formats. Each
showing and each download is an audit record, as the command's are."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.responses import Response

from mailbridge.console import report_render
from mailbridge.console.filters import parse_date
from mailbridge.console.reports import year_to_date
from mailbridge.errors import UserError
from mailbridge.privacy import access
from mailbridge.signin.roles import Role
from mailbridge.web.render import page
from mailbridge.web.routing import Pages, Viewer, console, current_viewer

pages = Pages()
ViewerDep = Annotated[Viewer, Depends(current_viewer)]
DOWNLOADS = {
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _period(request: Request) -> tuple[date, date, bool, dict[str, str]]:
    """The period and comparison asked for in the URL (the form's fields), else the
    financial year to date compared with the year before."""
    state = console(request)
    query = request.query_params
    first, last = year_to_date(state.services.calendar.local_date(state.clock()))
    asked = {"from": query.get("from", first.isoformat()), "to": query.get("to", last.isoformat())}
    start = parse_date(asked["from"][:40], "From") or first
    end = parse_date(asked["to"][:40], "To") or last
    if end < start:
        raise UserError(f"To ({end.isoformat()}) is before From ({start.isoformat()})")
    compare = query.get("compare", "yes") == "yes" if "from" in query else True
    return start, end, compare, asked


@pages.get("/report", Role.COORDINATOR)
def report(request: Request, viewer: ViewerDep) -> Response:
    state = console(request)
    try:
        start, end, compare, asked = _period(request)
    except UserError as exc:
        query = request.query_params
        asked = {"from": query.get("from", "")[:40], "to": query.get("to", "")[:40]}
        return page(
            request,
            "web/report.html",
            status_code=400,
            error=str(exc),
            asked=asked,
            compare=True,
            report_panel=None,
            query="",
        )
    done = access.report(
        state.services.engine,
        state.services.calendar,
        (start, end),
        "page",
        None,
        viewer.actor,
        compare_previous=compare,
        target_percent=state.services.config.report.on_time_target_percent,
        shown="in the web console",
    )
    query = f"from={start.isoformat()}&to={end.isoformat()}&compare={'yes' if compare else 'no'}"
    return page(
        request,
        "web/report.html",
        error=None,
        asked=asked,
        compare=compare,
        report_panel=report_render.panel(done.report),
        query=query,
    )


@pages.get("/report/panel.css", Role.COORDINATOR)
def panel_css(request: Request) -> Response:
    """The panel's own classes, on screen and in print (shared with the standalone file)."""
    css = console(request).templates.env.get_template(report_render.PANEL_CSS).render()
    return Response(css, media_type="text/css", headers={"Cache-Control": "private, max-age=3600"})


@pages.get("/report/download", Role.COORDINATOR, audited=True)
def download(request: Request, viewer: ViewerDep, format: str = "csv") -> Response:
    if format not in DOWNLOADS:
        raise UserError(f"format {format!r}: use csv, xlsx or html")
    state = console(request)
    start, end, compare, _ = _period(request)
    name = f"member-enquiries-report-{start.isoformat()}-to-{end.isoformat()}.{format}"
    folder = Path(tempfile.mkdtemp(prefix="mailbridge-report-"))
    output = folder / name
    access.report(
        state.services.engine,
        state.services.calendar,
        (start, end),
        format,
        output,
        viewer.actor,
        compare_previous=compare,
        target_percent=state.services.config.report.on_time_target_percent,
        shown="downloaded from the web console",
    )

    def remove() -> None:
        output.unlink(missing_ok=True)
        folder.rmdir()

    return FileResponse(
        output, media_type=DOWNLOADS[format], filename=name, background=BackgroundTask(remove)
    )
