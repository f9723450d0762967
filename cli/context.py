"""What every command needs: the loaded config, an upgraded database, clean error output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TextIO, TypeVar

import typer
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from mailbridge.config import Config, load_config
from mailbridge.errors import MailbridgeError, UserError, one_line
from mailbridge.privacy.audit import Actor
from mailbridge.privacy.operators import operator
from mailbridge.terminal import terminal_safe


class SafeConsole(Console):
    """A rich Console that prints no escape sequence or control character it was given
    (mailbridge.terminal): subjects, names, bodies and reasons come from email, and their
    sequences would act on the reader's terminal. Only rich's own styling reaches it.

    Strings are made safe before layout (`render_str`, which every str and table cell goes
    through); every segment again after it, whatever made it (a Text, a traceback)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            safe = terminal_safe(segment.text)
            unchanged = segment.control or safe == segment.text
            yield segment if unchanged else Segment(safe, segment.style)


class SafeStream:
    """stdout for what is printed without rich (csv, json, a report's text), made safe the
    same way."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(terminal_safe(text))


def stdout() -> SafeStream:
    return SafeStream(sys.stdout)


# Markup off: subjects, names and reasons come from email and CSV files, and a "[urgent]" or
# "[/x]" in them must print as written (with markup on, one is dropped, the other crashes).
console = SafeConsole(markup=False)
err_console = SafeConsole(stderr=True, markup=False)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="MAILBRIDGE_CONFIG",
        help="Path to config.toml (or set MAILBRIDGE_CONFIG).",
        show_default=True,
    ),
]

P = ParamSpec("P")
R = TypeVar("R")


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one clear line and the right exit code, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MailbridgeError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except (OperationalError, InterfaceError) as exc:
            # The database went away while the command ran (a restart, the network).
            _error(
                f"the database stopped answering: {one_line(exc)}. Nothing half-done was "
                "kept; check that it is running and try again"
            )
            raise typer.Exit(1) from None

    return wrapper


def _error(words: str) -> None:
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", words), highlight=False, soft_wrap=True
    )


# `mailbridge --as ADDRESS ...` (or MAILBRIDGE_AS): the coordinator at the command line,
# set by the app's callback before any command runs.
_claimed: list[str | None] = [None]


def claim(address: str | None) -> None:
    _claimed[0] = address


def actor_of(session: Session, config: Config) -> Actor:
    """Who runs this command, for the audit and the case's events (privacy/operators.py)."""
    return operator(session, config, _claimed[0])


def acting(config: Config, engine: object) -> Actor:
    """`actor_of` in a session of its own, before the command reads or changes anything:
    an `--as` that is not a coordinator stops it there, with nothing done."""
    with Session(engine) as session:  # type: ignore[arg-type]
        return actor_of(session, config)


def load(path: Path) -> Config:
    return load_config(path)


@contextmanager
def opened(path: Path) -> Iterator[tuple[Config, object]]:
    """Config plus an engine on an upgraded database (created on first run); an `--as`
    that is not a coordinator stops any command here."""
    from mailbridge.store.migrate import ensure_database

    config = load(path)
    engine = ensure_database(config.database.url)
    try:
        if _claimed[0]:  # a command that names nobody still refuses a false --as
            acting(config, engine)
        yield config, engine
    finally:
        engine.dispose()


# Hidden: tests (and a coordinator correcting a late entry) give the moment a change counts
# from; without it, now.
NowOption = Annotated[
    str | None,
    typer.Option("--now", hidden=True, help="The moment to act at (ISO 8601, UTC if no zone)."),
]


def now_from(value: str | None) -> datetime:
    """`--now` as an aware UTC moment, or the wall clock."""
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--now {value!r} is not a moment like 2026-12-01T10:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
