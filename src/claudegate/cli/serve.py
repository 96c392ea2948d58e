"""``claudegate serve``: the gateway."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

__all__ = ["register"]


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default: settings, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default: settings, 8080)."),
    workers: int | None = typer.Option(
        None,
        min=1,
        max=64,
        help="Gateway processes serving the port together (default: settings, 1); more than one needs "
        "redis_url, where they share their limits.",
    ),
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
    from claudegate.accounting.access_log import configure_logging
    from claudegate.cli.config import startup_lines
    from claudegate.config import ConfigError, Settings
    from claudegate.server.run import run_gateway

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
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    if settings.workers > 1 and not settings.redis_url:
        console.print(
            f"[red]error:[/red] {settings.workers} workers need redis_url (CLAUDEGATE_REDIS_URL): without it "
            "each process would enforce the account's limits on its own, and together they would exceed "
            "them. Set redis_url, or run one worker."
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level, settings.log_format)

    upstream = settings.resolved_upstream_url
    if upstream is None and not settings.upstreams:
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
    processes = f" ({settings.workers} workers)" if settings.workers > 1 else " (1 worker)"
    console.print(f"[bold]claudegate gateway[/bold] on http://{settings.host}:{settings.port}{processes}")
    for line in startup_lines(settings, config):
        console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    if settings.admin_token is None:
        console.print("admin API disabled (set CLAUDEGATE_ADMIN_TOKEN to enable /admin)")
    console.print("create a key:  claudegate keys create --org ORG")

    status = run_gateway(settings, config_file=config)
    if status:
        raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
