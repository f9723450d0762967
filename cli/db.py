"""`mailbridge db`: schema migrations and backups."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from mailbridge.cli.context import ConfigOption, console, friendly, load
from mailbridge.errors import MailbridgeError, first_line
from mailbridge.store.db import make_engine
from mailbridge.store.migrate import upgrade as run_upgrade

app = typer.Typer(help="Database schema and backups.", no_args_is_help=True)


@app.command()
@friendly
def upgrade(config: ConfigOption = "config.toml") -> None:  # type: ignore[assignment]
    """Create the database or bring its schema to the newest version.

    Example: mailbridge db upgrade --config /etc/mailbridge/config.toml
    """
    cfg = load(config)
    engine = make_engine(cfg.database.url)
    try:
        before, after = run_upgrade(engine)
    except SQLAlchemyError as exc:  # e.g. the server is down: upgrade() reads the revision first
        where = cfg.database.url.split("@")[-1]
        raise MailbridgeError(f"cannot open the database {where}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    if before == after:
        console.print(f"database already at revision {after}")
    else:
        console.print(f"database upgraded from {before or 'empty'} to {after}")


@app.command()
@friendly
def backup(
    destination: Annotated[Path, typer.Argument(help="Folder to create the copy in.")],
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Copy the case database and every stored email and attachment, while mailbridge runs.

    Creates DESTINATION/mailbridge-YYYYmmdd-HHMMSS. A PostgreSQL database is not copied:
    back it up with pg_dump. Example: mailbridge db backup /var/backups/mailbridge
    """
    from mailbridge.store.backup import backup as take_backup

    cfg = load(config)
    report = take_backup(cfg, destination, datetime.now())
    for path in report.copied:
        console.print(f"copied {path.relative_to(report.folder)} ({path.stat().st_size} bytes)")
    if report.blob_files:
        console.print(f"copied {report.blob_files} blob files kept by earlier versions")
    if report.postgres:
        console.print("the case database is on PostgreSQL: back it up with pg_dump")
    console.print(f"backup in {report.folder}")
