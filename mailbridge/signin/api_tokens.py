"""Bearer tokens of other council systems (`mailbridge api-tokens`): created with a name and
a scope, shown once, kept only as a hash (signin/tokens.py), revoked at once.

A token's last use is recorded at most once a minute (`LAST_USE_EVERY`): a system that
calls many times a second must not turn every read into a database write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select, update

from mailbridge.errors import UserError
from mailbridge.signin.tokens import digest, new_token
from mailbridge.store.db import transaction
from mailbridge.store.models import ApiScope, ApiToken, as_utc, utcnow

LAST_USE_EVERY = timedelta(minutes=1)
# What a token's name may be: it is the actor the audit and a case's events show.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SCOPES = tuple(s.value for s in ApiScope)
PREFIX = "mbt_"  # so a token is recognisable in a secret scanner or a leaked file


def _name(text: str) -> str:
    name = text.strip()
    if not NAME.match(name):
        raise UserError(
            f"{text!r} is not a token name: use up to 100 letters, digits, '.', '_' or '-', "
            "e.g. highways-crm"
        )
    return name


@dataclass(frozen=True, slots=True)
class Created:
    name: str
    scope: str
    token: str  # the secret: shown once, never stored


def create(engine: Engine, name: str, scope: str, *, created_by: str) -> Created:
    """A new token; its secret is returned here and nowhere else."""
    name = _name(name)
    if scope not in SCOPES:
        raise UserError(f"unknown scope {scope!r}; use read or write")
    secret = PREFIX + new_token()
    with transaction(engine) as session:
        if session.exec(select(ApiToken).where(ApiToken.name == name)).first() is not None:
            raise UserError(
                f"a token named {name} exists already (revoked ones are kept as the record of "
                "who called): choose another name"
            )
        session.add(
            ApiToken(name=name, scope=scope, token_hash=digest(secret), created_by=created_by)
        )
    return Created(name, scope, secret)


def listed(engine: Engine) -> list[ApiToken]:
    """Every token, revoked ones too, in the order they were made."""
    with Session(engine) as session:
        return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))))


def revoke(engine: Engine, name: str, *, now: datetime | None = None) -> ApiToken:
    """Refuse the token from its next call on; the row stays as the record."""
    with transaction(engine) as session:
        token = session.exec(select(ApiToken).where(ApiToken.name == name.strip())).first()
        if token is None:
            raise UserError(
                f"no API token is named {name.strip()} (see `mailbridge api-tokens list`)"
            )
        if token.revoked_at is None:
            token.revoked_at = now or utcnow()
            session.add(token)
        session.flush()
        session.expunge(token)
        return token


def authenticate(engine: Engine, secret: str, now: datetime) -> ApiToken | None:
    """The live token with this secret (None: unknown or revoked), its use recorded when the
    last record is a minute old or more."""
    if not secret or len(secret) > 200:
        return None
    with Session(engine) as session:
        token = session.exec(select(ApiToken).where(ApiToken.token_hash == digest(secret))).first()
        if token is None or token.revoked_at is not None:
            return None
        session.expunge(token)
    last = token.last_used_at
    if last is None or now - as_utc(last) >= LAST_USE_EVERY:
        with transaction(engine) as session:
            session.execute(
                update(ApiToken).where(col(ApiToken.id) == token.id).values(last_used_at=now)
            )
        token.last_used_at = now
    return token
