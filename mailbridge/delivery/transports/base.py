"""What every transport for outgoing mail shares: the `Sender` interface, its result, its
errors and its context-manager plumbing. Imports no transport.

Errors carry the server's own words, sorted into temporary (retry later) and permanent
(give up and tell a person); both are `errors.DeliveryError`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, Self

from mailbridge.errors import DeliveryError
from mailbridge.probe import Probe

Security = Literal["ssl", "starttls", "plain"]


class TemporaryDeliveryError(DeliveryError):
    """Try again later: a 4xx reply, a timeout or a lost connection."""


class PermanentDeliveryError(DeliveryError):
    """Do not try again: a 5xx reply. The message holds the server's words."""


class SmtpLoginRefused(PermanentDeliveryError):
    """The server refused our login: no mail goes until a person fixes the credentials.

    `words` is the server's reply alone (e.g. "535 5.7.8 Authentication failed"), for an
    alert that must carry nothing else."""

    def __init__(self, message: str, words: str) -> None:
        super().__init__(message)
        self.words = words


@dataclass(frozen=True, slots=True)
class SendResult:
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> server's words


class Sender(Protocol):
    def open(self) -> None: ...

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult: ...

    def close(self) -> None: ...

    def probe(self) -> Probe:
        """Connect and log in as delivery would, send nothing, and say what the server
        takes; raises TemporaryDeliveryError or PermanentDeliveryError as delivery would."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Lifecycle:
    """Context-manager plumbing shared by the senders."""

    def open(self) -> None:  # pragma: no cover - overridden
        pass

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
