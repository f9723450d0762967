"""The embedded default transport: outgoing mail written into a local Maildir folder."""

from __future__ import annotations

import mailbox
import os
from collections.abc import Sequence
from pathlib import Path

from mailbridge.delivery.transports.base import Lifecycle, SendResult, TemporaryDeliveryError
from mailbridge.probe import Probe


class MaildirSender(Lifecycle):
    """The embedded default: each message is written, byte for byte, into a Maildir."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        if self._box is not None:
            return
        try:
            # Maildir() makes only the last folder; a fresh data dir lacks its parents too.
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._box = mailbox.Maildir(self.path, create=True)
        except OSError as exc:
            raise TemporaryDeliveryError(
                f"cannot open the outgoing Maildir {self.path}: {exc.strerror}; check [smtp] url"
            ) from exc

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> SendResult:
        self.open()
        assert self._box is not None
        try:
            self._box.add(raw)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.path}: {exc.strerror}") from exc
        return SendResult()

    def close(self) -> None:
        self._box = None

    def probe(self) -> Probe:
        """Where the mail goes, without creating it: the first delivery does."""
        there = next((p for p in (self.path, *self.path.parents) if p.exists()), None)
        if there is None or not there.is_dir() or not os.access(there, os.W_OK | os.X_OK):
            raise TemporaryDeliveryError(
                f"cannot write the outgoing Maildir {self.path}: check [smtp] url and "
                "that the user running mailbridge may write there"
            )
        return Probe(
            f"writes each email into {self.path}",
            ("mail is not sent: set [smtp] url to your mail server to deliver it",),
        )
