"""`mailbridge keys`: the key that signs our Message-IDs and reply addresses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailbridge.cli.context import ConfigOption, console, friendly, load
from mailbridge.config import MIN_SIGNING_KEY_BYTES, write_signing_key
from mailbridge.errors import UserError

app = typer.Typer(help="The signing key.", no_args_is_help=True)


@app.command()
@friendly
def generate(
    path: Annotated[
        Path | None,
        typer.Argument(help="The key file to create; by default [security] signing_key_file."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (breaks its signatures).")
    ] = False,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Write a new random signing key to a file only its owner can read (0600).

    Examples: mailbridge keys generate /etc/mailbridge/signing.key;
    mailbridge keys generate --config config.toml (the file its [security] names)
    """
    if path is None:
        cfg = load(config)
        if cfg.security.signing_key_file is None:
            raise UserError(
                f"{cfg.source}: [security] names no signing_key_file: give the file, e.g. "
                "mailbridge keys generate /etc/mailbridge/signing.key, and set "
                "signing_key_file to it"
            )
        path = cfg.security.signing_key.path(cfg.source)
    write_signing_key(path, force=force)
    console.print(
        f"wrote a new signing key ({MIN_SIGNING_KEY_BYTES} random bytes as "
        f"{2 * MIN_SIGNING_KEY_BYTES} hexadecimal digits) to {path}, readable by you only",
        highlight=False,
    )
