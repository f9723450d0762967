"""Outgoing email as bytes: our Message-IDs and the headers that keep loops away (pure)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from mailbridge.models import utcnow

LOOP_HEADER = "X-Mailbridge-Loop"
_ID = re.compile(
    r"^mb\.(?P<ref>[A-Z]{1,8}-\d{4}-\d{5})\.(?P<rand>[0-9a-f]{16})\.(?P<sig>[0-9a-f]{10})@"
)


def _signature(reference: str, rand: str, key: bytes) -> str:
    return hmac.new(key, f"{reference}.{rand}".encode(), hashlib.sha256).hexdigest()[:10]


def new_message_id(domain: str, reference: str | None = None, key: bytes | None = None) -> str:
    """Our own Message-ID (no angle brackets), carrying the case and, with a key, a signature."""
    rand = secrets.token_hex(8)
    if reference is None:
        return f"mb.{rand}@{domain}"
    sig = f".{_signature(reference, rand, key)}" if key else ""
    return f"mb.{reference}.{rand}{sig}@{domain}"


def verify_message_id(message_id: str, key: bytes) -> str | None:
    """The case reference a Message-ID of ours names, if its signature is valid."""
    match = _ID.match(message_id.strip().strip("<>"))
    if not match:
        return None
    expected = _signature(match["ref"], match["rand"], key)
    return match["ref"] if hmac.compare_digest(expected, match["sig"]) else None


def _address(email: str, name: str | None = None) -> Address:
    local, _, domain = email.partition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def compose(
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    cc: Sequence[str] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = "auto-replied",
    extra_headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """A complete RFC 5322 message (CRLF line ends), text plus an HTML alternative."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender, sender_name)
    msg["To"] = [_address(a) for a in to]
    if cc:
        msg["Cc"] = [_address(a) for a in cc]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or utcnow())
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{in_reply_to}>"
    refs = [r for r in dict.fromkeys(references) if r]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = sender.rpartition("@")[2]
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for filename, content_type, payload in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(
            payload, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
    return msg.as_bytes()
