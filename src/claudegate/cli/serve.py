"""``claudegate serve``: the gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel

__all__ = ["register"]


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default: settings, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default: settings, 8080)."),
    config: Path | None = typer.Option(
        None,
        "--config",
        exists=True,
        dir_okay=False,
        help="A TOML settings file; the environment overrides it.",
    ),
) -> None:
    """Run the Anthropic-compatible gateway.

    Without ANTHROPIC_API_KEY or an upstream URL it forwards to the built-in simulator.
    """
    import uvicorn

    from claudegate.config import ConfigError, Settings
    from claudegate.server.gateway import Gateway

    console = Console(stderr=True)
    try:
        settings = Settings.load(config)
    except ConfigError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    if host is not None:
        settings = settings.model_copy(update={"host": host})
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    upstream = settings.resolved_upstream_url
    if upstream is None:
        console.print(
            Panel(
                "No ANTHROPIC_API_KEY and no CLAUDEGATE_UPSTREAM_URL are set, so the gateway forwards to its "
                "[bold]built-in Anthropic API simulator[/bold]. Replies are simulated, not written by "
                "Claude, "
                "and cost nothing. Set ANTHROPIC_API_KEY to serve Claude.",
                title="claudegate: SIMULATOR MODE",
                border_style="yellow",
            )
        )
    console.print(
        f"[bold]claudegate gateway[/bold] on http://{settings.host}:{settings.port}  "
        f"upstream={upstream or 'built-in simulator'}  database={settings.database_url_redacted}"
    )
    if settings.admin_token is None:
        console.print("admin API disabled (set CLAUDEGATE_ADMIN_TOKEN to enable /admin)")
    console.print("create a key:  claudegate keys create --org ORG")

    gateway = Gateway(settings, config_file=config)
    uvicorn.run(
        gateway,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=30,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
