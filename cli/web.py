"""`mailbridge web`: the browser console (docs/web.md), served by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from mailbridge import logs
from mailbridge.cli.context import ConfigOption, console, friendly, load, opened
from mailbridge.config import check_secrets


def register(app: typer.Typer) -> None:
    app.command("web")(web)


@friendly
def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on (behind a reverse proxy: keep loopback).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    config: ConfigOption = "config.toml",  # type: ignore[assignment]
) -> None:
    """Serve the web console for the Member Support Team.

    People sign in with the council's single sign-on ([web.sso]) or an emailed link;
    sign-in links and other mail go out through `mailbridge run`, running beside it.
    Example: mailbridge web --port 8080 --config config.toml
    """
    import uvicorn  # only this command needs the web server

    from mailbridge.web.app import create_app

    check_secrets(load(config))
    with opened(config) as (cfg, engine):
        logs.setup(cfg.logging.level, cfg.logging.format)
        app = create_app(cfg, engine)  # type: ignore[arg-type]
        console.print(
            f"mailbridge web console on http://{host}:{port} (people use {cfg.web.base_url})",
            highlight=False,
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=False,  # the app reads them from [web] trusted_proxies only
            server_header=False,
            log_config=None,
            access_log=False,
        )
