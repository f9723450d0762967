"""The dashboard's Export: exactly the cases its filters select, as CSV or XLSX, recorded
in the audit like `mailbridge export` (privacy/access.py does both).

CSV goes out as it is read; XLSX (a zip, written whole) is written to a private temporary
file by openpyxl's write-only mode, sent in blocks and removed, so neither holds every case
in memory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response, StreamingResponse

from mailbridge.console.export import FORMATS, MEDIA_TYPES, file_name
from mailbridge.console.filters import FilterErrors, from_query
from mailbridge.errors import UserError
from mailbridge.privacy import access
from mailbridge.signin.roles import Role
from mailbridge.web.pages.home import given, problems
from mailbridge.web.routing import Pages, Viewer, console, current_viewer

pages = Pages()

BLOCK = 64 * 1024


def _sent_then_removed(folder: Path, path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as stream:
            while block := stream.read(BLOCK):
                yield block
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pages.get("/export", Role.COORDINATOR, audited=True)
def export(
    request: Request,
    viewer: Annotated[Viewer, Depends(current_viewer)],
    format: str = "csv",
) -> Response:
    if format not in FORMATS:
        raise UserError(f"Export as {' or '.join(f.upper() for f in FORMATS)} only")
    state = console(request)
    services = state.services
    calendar = services.calendar
    today = calendar.local_date(state.clock())
    # Every case the filters select, in the dashboard's order; not just the page on screen.
    try:
        wanted = from_query({**given(request), "page": ""}, limit=None)
    except FilterErrors as exc:
        raise UserError("; ".join(text for _, text in problems(exc))) from None
    name = file_name(today, format)
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "csv":
        chunks = access.export_csv_download(
            services.engine, wanted, calendar, viewer.actor, today=today
        )
        return StreamingResponse(chunks, media_type=MEDIA_TYPES[format], headers=headers)
    folder = Path(tempfile.mkdtemp(prefix="mailbridge-export-"))
    path = folder / name
    try:
        access.export(
            services.engine,
            wanted,
            path,
            format,
            calendar,
            viewer.actor,
            today=today,
            download=True,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    headers["Content-Length"] = str(path.stat().st_size)
    return StreamingResponse(
        _sent_then_removed(folder, path), media_type=MEDIA_TYPES[format], headers=headers
    )
