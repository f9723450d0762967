"""Mail that must never be treated as an enquiry, decided before any routing (pure)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mailbridge.parsing import ParsedEmail

LOOP_HEADER = "x-mailbridge-loop"


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    reason: str


def check(parsed: ParsedEmail, own_addresses: Collection[str]) -> Rejection | None:
    """Our own mail coming back (a loop) is refused before it can open a case."""
    if LOOP_HEADER in parsed.headers:
        return Rejection("loop", "the message carries our own loop header: it is mail we sent")
    if parsed.from_address and parsed.from_address in own_addresses:
        return Rejection("loop", f"the message is from our own address {parsed.from_address}")
    return None
