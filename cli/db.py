"""`mailbridge db`: schema migrations."""

from __future__ import annotations

import typer
from sqlalchemy.exc import SQLAlchemyError

from mailbridge.cli.context import ConfigOption, console, friendly, load
from mailbridge.db import make_engine
from mailbridge.errors import MailbridgeError
from mailbridge.migrate import upgrade as run_upgrade

app = typer.Typer(help="Database schema.", no_args_is_help=True)


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
        raise MailbridgeError(
            f"cannot open the database {where}: {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        engine.dispose()
    if before == after:
        console.print(f"database already at revision {after}")
    else:
        console.print(f"database upgraded from {before or 'empty'} to {after}")
