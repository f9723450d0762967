"""What a look at a mailbox or mail server found, for `mailbridge check`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Probe:
    """Found by connecting and looking, changing nothing."""

    found: str  # what a person setting mailbridge up wants to know, in one line
    warnings: tuple[str, ...] = ()  # works, but probably not as meant; each says what to do


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def loopback(host: str) -> bool:
    """Whether a host name is this machine, where an unencrypted login never leaves it."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
