"""Structured logs: one line per event with key=value fields (or JSON), never a mail body."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from mailbridge.terminal import terminal_safe

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def __init__(self, as_json: bool = False) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        base = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.as_json:
            return json.dumps({**base, **fields}, default=str)
        extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        # The message may quote a server or an email; field values are JSON, escaped already.
        msg = terminal_safe(str(base["msg"]))
        line = f"{base['time']} {base['level']:<7} {base['logger']}: {msg}"
        return f"{line} {extra}".rstrip()


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(as_json=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("imapclient", "aiosmtplib", "alembic", "mailparser", "msal"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# --- records that wait for a commit -------------------------------------------------------

_Waiting = list[tuple[logging.Handler, logging.LogRecord]]
_HELD: ContextVar[_Waiting | None] = ContextVar("mailbridge_held_logs", default=None)


class _Hold(logging.Filter):
    """Sets a handler's INFO and DEBUG records aside while a block is holding them."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        waiting = _HELD.get()
        if waiting is None or record.levelno >= logging.WARNING:
            return True
        waiting.append((self.handler, record))
        return False


class Held:
    def __init__(self) -> None:
        self.released = False

    def release(self) -> None:
        """The work the records describe is committed: let them out when the block ends."""
        self.released = True


@contextmanager
def held() -> Iterator[Held]:
    """INFO and DEBUG records logged in the block wait, and go out (in order) only if
    `release()` was called; otherwise they are dropped.

    A batch is tried whole and, if a message raises, rolled back and run again message by
    message: without this, "mail withheld" and the like were logged twice, or for work
    that was rolled back. Warnings and errors go out at once. Blocks nest: an inner block's
    released records wait for the outer block's decision.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _Hold) for f in handler.filters):
            handler.addFilter(_Hold(handler))
    outer = _HELD.get()
    mine: _Waiting = []
    token = _HELD.set(mine)
    box = Held()
    try:
        yield box
    finally:
        _HELD.reset(token)
        if box.released:
            if outer is not None:
                outer.extend(mine)
            else:
                for handler, record in mine:
                    if record.levelno >= handler.level:
                        handler.handle(record)
