"""Signed-in browsers: a random token in an HttpOnly cookie, its hash in `web_session`.

A session ends at the first of: sign-out, its absolute end (12 hours; 30 days when "keep me
logged in" was ticked and allowed), or `idle_minutes` without a request. Server-side rows,
not signed cookies, so sign-out and removing someone from the directory end a session at
once, on every server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session

from mailbridge.config import WebConfig
from mailbridge.signin.roles import Role, roles_of
from mailbridge.signin.tokens import digest, new_token
from mailbridge.store.models import Person, WebSession, as_utc

# A session's last-seen time is written at most this often (a page load is not a write).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Started:
    token: str  # for the cookie; never stored
    expires_at: datetime
    keep: bool  # a persistent cookie (kept across browser restarts)


def may_keep(person: Person, web: WebConfig) -> bool:
    """Whether "keep me logged in" is honoured for this person."""
    if web.keep_signed_in_days <= 0:
        return False
    return web.keep_signed_in_coordinators or Role.COORDINATOR not in roles_of(person)


def start(
    session: Session,
    person: Person,
    web: WebConfig,
    *,
    method: str,
    client: str,
    keep: bool,
    now: datetime,
) -> Started:
    assert person.id is not None
    keep = keep and may_keep(person, web)
    if keep:
        lasts = timedelta(days=web.keep_signed_in_days)
        idle = lasts
    else:
        lasts = timedelta(hours=web.absolute_hours)
        idle = timedelta(minutes=web.idle_minutes)
    token = new_token()
    expires = now + lasts
    session.add(
        WebSession(
            token_hash=digest(token),
            person_id=person.id,
            csrf=new_token(),
            method=method,
            client=client[:64],
            created_at=now,
            seen_at=now,
            expires_at=expires,
            idle_seconds=int(idle.total_seconds()),
        )
    )
    sweep(session, now)
    return Started(token=token, expires_at=expires, keep=keep)


def live(session: Session, token: str | None, now: datetime) -> WebSession | None:
    """The session a cookie names, if it is still alive; an expired one is deleted."""
    if not token or len(token) > 128:
        return None
    row = session.get(WebSession, digest(token))
    if row is None:
        return None
    seen = as_utc(row.seen_at)
    if now >= as_utc(row.expires_at) or now - seen > timedelta(seconds=row.idle_seconds):
        session.delete(row)
        return None
    if now - seen >= TOUCH_EVERY:
        session.execute(
            update(WebSession).where(WebSession.token_hash == row.token_hash).values(seen_at=now)  # type: ignore[arg-type]
        )
    return row


def conforms(
    session: Session, row: WebSession, person: Person, web: WebConfig, now: datetime
) -> bool:
    """Whether a session still fits its person's rules: one kept from before they became a
    coordinator (who may not be kept) is cut to an ordinary session's limits, and is over if
    those have passed."""
    idle = timedelta(minutes=web.idle_minutes)
    if row.idle_seconds <= idle.total_seconds() or may_keep(person, web):
        return True
    expires = min(
        as_utc(row.expires_at), as_utc(row.created_at) + timedelta(hours=web.absolute_hours)
    )
    if now >= expires or now - as_utc(row.seen_at) > idle:
        return False
    session.execute(
        update(WebSession)
        .where(WebSession.token_hash == row.token_hash)  # type: ignore[arg-type]
        .values(expires_at=expires, idle_seconds=int(idle.total_seconds()))
    )
    return True


def end(session: Session, token: str | None) -> None:
    if token and len(token) <= 128:
        session.execute(delete(WebSession).where(WebSession.token_hash == digest(token)))  # type: ignore[arg-type]


def sweep(session: Session, now: datetime) -> None:
    """Forget sessions past their absolute end (idle ones go when next presented)."""
    session.execute(delete(WebSession).where(WebSession.expires_at < now))  # type: ignore[arg-type]
