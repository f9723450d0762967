"""Random tokens and their hashes: what a browser or an email holds, and what we keep."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the database keeps of a token: a leaked copy of the table signs nobody in."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
