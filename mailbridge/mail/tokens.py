"""Our signed tokens: Message-IDs and reply addresses that name a case and prove we made
them (HMAC with the configured signing key).

Made when delivery composes mail, verified when the pipeline threads a reply: one module, so
the format and the signature are written once. Pure.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

_ID = re.compile(
    # Five or more digits: the sequence is zero-padded to five but keeps counting past 99999.
    r"^mb\.(?P<ref>[A-Z]{1,8}-\d{4}-\d{5,})\.(?P<rand>[0-9a-f]{16})\.(?P<sig>[0-9a-f]{10})@"
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


def verify_message_id(message_id: str, keys: Sequence[bytes]) -> str | None:
    """The case reference a Message-ID of ours names, if one of `keys` signed it (the
    current key and those before a rotation)."""
    match = _ID.match(message_id.strip().strip("<>"))
    if not match:
        return None
    return match["ref"] if _signed_by(match["ref"], match["rand"], match["sig"], keys) else None


def _signed_by(reference: str, rand: str, signature: str, keys: Sequence[bytes]) -> bool:
    return any(hmac.compare_digest(_signature(reference, rand, key), signature) for key in keys)


_REPLY_TAG = re.compile(r"^(?P<ref>[A-Z]{1,8}-\d{4}-\d{5,})\.(?P<sig>[0-9a-f]{10})$", re.I)


def reply_address(mailbox: str, reference: str, key: bytes) -> str:
    """`enquiries+MQ-2026-00042.<signature>@domain`: plus addressing that names and proves a
    case, for a Reply-To that survives providers which rewrite Message-IDs."""
    local, _, domain = mailbox.partition("@")
    return f"{local}+{reference}.{_signature(reference, 'reply', key)}@{domain}"


def verify_reply_address(address: str, keys: Sequence[bytes]) -> str | None:
    """The case reference a signed reply address of ours names, if one of `keys` signed it."""
    local = address.strip().strip("<>").partition("@")[0]
    tag = local.partition("+")[2]
    match = _REPLY_TAG.match(tag)
    if not match:
        return None
    reference = match["ref"].upper()
    return reference if _signed_by(reference, "reply", match["sig"].lower(), keys) else None
