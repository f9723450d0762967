"""Emailed sign-in links: for the embedded default, and for anyone without an SSO account.

A link is a random nonce signed with the console's key (itsdangerous, so a link from another
installation, or edited, is refused before the database is asked), kept only as a hash, good
for `link_minutes` and used once: the row is marked used by a conditional UPDATE, so two
clicks racing cannot both sign in. Requests are counted per address and per client over 15
minutes whether or not the address is known (under a lock: asking in parallel does not
get round it); the person asking always sees the same page, so the form reveals nobody.

Opening the link shows a button that signs in (a POST): mail scanners such as Microsoft
Defender's Safe Links fetch every link in an email, and would otherwise use it up.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, func, select, text, update
from sqlmodel import Session

from mailbridge.cases.directory import identify, valid_address
from mailbridge.config import Config
from mailbridge.delivery.queue import local, queue_mail
from mailbridge.errors import UserError
from mailbridge.files import private_folder, private_open
from mailbridge.services import Services
from mailbridge.signin.roles import roles_of
from mailbridge.signin.tokens import digest, new_token
from mailbridge.store.models import Person, SigninLink, as_utc

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)  # requests are counted over this long
KEPT = timedelta(hours=1)  # past WINDOW and the longest link_minutes: then forgotten
SALT = "mailbridge sign-in link"
KEY_FILE = "web.key"


class LinkRefused(UserError):
    """A link that cannot sign anyone in, with the words the page shows."""


def console_key(config: Config) -> bytes:
    """The key that signs links: [web] secret_key_env/_file, else one made once in the data
    folder (0600), so the embedded default needs no setting."""
    web = config.web
    if web.secret_key_env or web.secret_key_file:
        return web.secret_key.resolve("[web] secret_key", config.source).encode()
    path = Path(config.storage.data_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    private_folder(path.parent)
    key = secrets.token_hex(32)
    try:
        with open(path, "x") as _:
            pass
    except FileExistsError:
        return path.read_bytes().strip()
    with private_open(path) as stream:
        stream.write(key)
    return key.encode()


def _serializer(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=SALT)


@dataclass(frozen=True, slots=True)
class Asked:
    sent: bool  # for the log and the tests; the page never tells
    why: str  # "sent", "unknown address", "too many for this address", ...


def request_link(
    session: Session,
    services: Services,
    key: bytes,
    *,
    address: str,
    client: str,
    keep: bool,
    next_path: str,
    now: datetime,
) -> Asked:
    """Record the request and queue the email if the address is someone's; the caller shows
    the same page whatever this returns."""
    web = services.config.web
    addr = address.strip().lower()
    if not valid_address(addr):
        raise UserError("Enter an email address in the correct format, like name@example.gov.uk")
    if session.get_bind().dialect.name == "postgresql":
        # Count and record under one lock, so requests made in parallel cannot all count
        # the same few (SQLite's BEGIN IMMEDIATE already queues writers).
        session.execute(text("LOCK TABLE signin_link IN SHARE ROW EXCLUSIVE MODE"))
    since = now - WINDOW
    # Forget requests no count or link can need any more: the addresses typed are personal
    # data, known or not.
    session.execute(delete(SigninLink).where(SigninLink.created_at < now - KEPT))  # type: ignore[arg-type]
    by_address = _count(session, SigninLink.address == addr, since)
    client = counted_as(client)
    by_client = _count(session, SigninLink.client == client, since)
    if by_address >= web.links_per_address:
        return Asked(False, "too many for this address")
    if by_client >= web.links_per_client:
        return Asked(False, "too many from this client")
    who = identify(session, addr)
    person = session.get(Person, who.person_id) if who.person_id else None
    known = person is not None and bool(roles_of(person))
    nonce = new_token()
    expires = now + timedelta(minutes=web.link_minutes)
    session.add(
        SigninLink(
            token_hash=digest(nonce),
            address=addr,
            person_id=person.id if known and person else None,
            client=client,
            keep=keep,
            next_path=safe_next(next_path),
            created_at=now,
            expires_at=expires,
        )
    )
    if not known or person is None:
        return Asked(False, "unknown address")
    link = (
        f"{web.base_url.rstrip('/')}/sign-in/link?"
        f"{urlencode({'token': _serializer(key).dumps(nonce)})}"
    )
    shown = local(services, expires)
    assert shown is not None
    queue_mail(
        session,
        services,
        kind="signin_link",
        template="signin_link",
        to=[addr],
        context={"person_name": person.name, "link": link, "expires": f"{shown:%H:%M on %d %B}"},
        automatic=True,
        rate_limited=False,  # counted here, per address and per client
    )
    return Asked(True, "sent")


def counted_as(client: str) -> str:
    """The client a request is counted against: an IPv6 address's /64 (one household's or
    one machine's whole network), any other address as it is."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((int(address), 64), strict=False))
    return str(address)


def _count(session: Session, clause: object, since: datetime) -> int:
    return session.execute(
        select(func.count()).select_from(SigninLink).where(clause, SigninLink.created_at >= since)  # type: ignore[arg-type]
    ).scalar_one()


def check(key: bytes, signed: str, minutes: int) -> str:
    """The nonce a link carries, or LinkRefused; reads nothing from the database."""
    try:
        return str(_serializer(key).loads(signed, max_age=minutes * 60))
    except SignatureExpired:
        raise LinkRefused(_EXPIRED) from None
    except BadSignature:
        raise LinkRefused(_INVALID) from None


def redeem(session: Session, key: bytes, signed: str, *, minutes: int, now: datetime) -> SigninLink:
    """Use the link once: the sign-in it grants, or LinkRefused saying why not."""
    nonce = check(key, signed, minutes)
    row = session.get(SigninLink, digest(nonce))
    if row is None or row.person_id is None:
        raise LinkRefused(_INVALID)
    if row.used_at is not None:
        raise LinkRefused(_USED)
    if now >= as_utc(row.expires_at):
        raise LinkRefused(_EXPIRED)
    used = session.execute(
        update(SigninLink)
        .where(SigninLink.token_hash == row.token_hash, SigninLink.used_at.is_(None))  # type: ignore[arg-type, union-attr]
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkRefused(_USED)
    return row


_EXPIRED = "This sign-in link has expired. Ask for a new one below."
_USED = "This sign-in link has already been used. Ask for a new one below."
_INVALID = "This sign-in link is not valid. Check you copied all of it, or ask for a new one."


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a URL),
    and no control characters (browsers drop tabs and newlines, and PostgreSQL refuses NUL)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        return "/"
    return path[:500]
