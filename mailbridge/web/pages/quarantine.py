"""The quarantine: messages that opened no case, listed and shown with their reasons, and a
coordinator's retry, accept and release, through the functions `mailbridge quarantine`
calls (pipeline/quarantine.py, pipeline/processor.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse
from sqlmodel import select
from starlette.responses import Response

from mailbridge.errors import UserError
from mailbridge.pipeline import quarantine as q
from mailbridge.pipeline.outcomes import CaseOpened, CaseUpdated, Failed, Handled, Quarantined
from mailbridge.pipeline.processor import accept_quarantined, acceptance, retry_quarantined
from mailbridge.signin.roles import Role
from mailbridge.store.models import Case, QuarantineStatus, as_utc
from mailbridge.web.render import page
from mailbridge.web.routing import Pages, Viewer, console, current_viewer, db

pages = Pages()
ViewerDep = Annotated[Viewer, Depends(current_viewer)]
PAGE_SIZE = 50
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # an id a database integer holds

# The banner after an action, by the `done` word in the redirect: fixed words only.
DONE = {
    "opened": "Accepted: it opened a case.",
    "contribution": "Accepted: it is now a contribution on its case.",
    "applied": "Done: it was applied to its case.",
    "handled": "Done: it was handled, and concerned no case.",
    "again": "It was quarantined again, under this new number. The reason is below.",
    "released": "Released: nothing was done with it, and it no longer waits.",
}
# The `done` words whose banner names the case the message went to.
ON_A_CASE = frozenset({"opened", "contribution", "applied"})


@pages.get("/quarantine", Role.COORDINATOR)
def list_page(
    request: Request,
    viewer: ViewerDep,
    status: Annotated[q.Listing, Query()] = q.Listing.WAITING,
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> Response:
    state = console(request)
    listed = q.shown_items(
        state.services,
        viewer.actor,
        which=status,
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
    )
    zone = state.services.calendar.zone
    pages_in_all = max(1, -(-listed.total // PAGE_SIZE))
    return page(
        request,
        "web/quarantine.html",
        title="Quarantine",
        listed=listed,
        received={i.id: as_utc(i.created_at).astimezone(zone) for i in listed.items},
        status=status.value,
        statuses=[(s.value, s.value.capitalize()) for s in q.Listing],
        page_number=page_number,
        pages_in_all=pages_in_all,
        first=(page_number - 1) * PAGE_SIZE + 1,
    )


def _item_page(
    request: Request,
    viewer: Viewer,
    item_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    state = console(request)
    shown = q.shown_item(state.services, item_id, viewer.actor)
    done = request.query_params.get("done")
    banner = DONE.get(done or "") if error is None else None
    went_to = None
    if banner and done in ON_A_CASE:
        went_to = _existing_reference(request, request.query_params.get("case", ""))
    zone = state.services.calendar.zone
    item = shown.item
    return page(
        request,
        "web/quarantine_item.html",
        status_code=status_code,
        title=f"Quarantined message {item_id}",
        shown=shown,
        item=item,
        letter=shown.letter,
        received=as_utc(item.created_at).astimezone(zone),
        resolved=as_utc(item.resolved_at).astimezone(zone) if item.resolved_at else None,
        waiting=item.status == QuarantineStatus.WAITING and item.erased_at is None,
        acceptance=acceptance(item),
        retryable=item.reason_code != q.TOO_LARGE,
        banner=banner,
        went_to=went_to,
        error=error,
    )


def _existing_reference(request: Request, reference: str) -> str | None:
    """A case reference from the redirect, shown only if such a case exists."""
    with db(request) as session:
        found = session.exec(select(Case.reference).where(Case.reference == reference[:32]))
        return found.first()


@pages.get("/quarantine/{item_id}", Role.COORDINATOR)
def item_page(request: Request, viewer: ViewerDep, item_id: ItemId) -> Response:
    return _item_page(request, viewer, item_id)


def _done(item_id: int, word: str, reference: str | None = None) -> Response:
    case = f"&case={reference}" if reference else ""
    return RedirectResponse(f"/quarantine/{item_id}?done={word}{case}", status_code=303)


@pages.post("/quarantine/{item_id}/retry", Role.COORDINATOR)
def retry(request: Request, viewer: ViewerDep, item_id: ItemId) -> Response:
    try:
        outcome = retry_quarantined(console(request).services, item_id, actor=viewer.actor)
        if isinstance(outcome, Failed):
            raise UserError(f"message {item_id} failed again: {outcome.error}")
    except UserError as exc:
        return _item_page(request, viewer, item_id, error=str(exc), status_code=400)
    return _answer(item_id, outcome)


@pages.post("/quarantine/{item_id}/accept", Role.COORDINATOR)
def accept(
    request: Request,
    viewer: ViewerDep,
    item_id: ItemId,
    as_: Annotated[str, Form(alias="as", max_length=32)] = q.ACCEPT_AS[0],
) -> Response:
    try:
        outcome = accept_quarantined(
            console(request).services, item_id, as_, actor=viewer.actor.shown
        )
    except UserError as exc:
        return _item_page(request, viewer, item_id, error=str(exc), status_code=400)
    return _answer(item_id, outcome, as_)


@pages.post("/quarantine/{item_id}/release", Role.COORDINATOR)
def release(request: Request, viewer: ViewerDep, item_id: ItemId) -> Response:
    try:
        q.release(console(request).services, item_id, actor=viewer.actor)
    except UserError as exc:
        return _item_page(request, viewer, item_id, error=str(exc), status_code=400)
    return _done(item_id, "released")


def _answer(item_id: int, outcome: object, as_: str = "") -> Response:
    """Where a retry or an acceptance leads: the item with a banner saying what it did (as
    the command line's one line does), or the new item when it was quarantined again."""
    if isinstance(outcome, CaseOpened):
        return _done(item_id, "opened", outcome.reference)
    if isinstance(outcome, CaseUpdated):
        word = "contribution" if outcome == CaseUpdated(outcome.reference, as_) else "applied"
        return _done(item_id, word, outcome.reference)
    if isinstance(outcome, Quarantined):
        return _done(outcome.quarantine_id, "again")
    if isinstance(outcome, Handled):
        return _done(item_id, "handled")
    raise UserError(f"quarantined message {item_id} was already handled")
