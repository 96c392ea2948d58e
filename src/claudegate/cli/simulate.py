"""``claudegate simulate``: the Anthropic API simulator as a standalone server."""

from __future__ import annotations

from enum import StrEnum

import typer

__all__ = ["register"]


class Tier(StrEnum):
    one = "1"
    two = "2"
    three = "3"
    four = "4"
    unlimited = "unlimited"


class Latency(StrEnum):
    none = "none"
    realistic = "realistic"


def simulate(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8100, help="Port to listen on."),
    tier: Tier = typer.Option(Tier.unlimited, help="Anthropic usage tier whose rate limits to enforce."),
    latency: Latency = typer.Option(
        Latency.none, help="none: answer at once. realistic: Sonnet-like time to first token and token rate."
    ),
    ttft_ms: float | None = typer.Option(None, help="Time to first token in ms (overrides --latency)."),
    tokens_per_second: float | None = typer.Option(None, help="Output token rate (overrides --latency)."),
    jitter: float | None = typer.Option(
        None, help="Random spread of every delay, 0 to 1 (overrides --latency)."
    ),
    fault: list[str] = typer.Option(
        [], help="Random fault as KIND[:ARG]=RATE, repeatable, e.g. overloaded=0.1 or slow:2.5=0.05."
    ),
    burst: float = typer.Option(
        1.0,
        help="Bucket capacity as a share of the per-minute limit: 1.0 lets a minute's allowance go at once, "
        "0.0167 enforces 60 RPM as one request per second.",
    ),
    api_key: list[str] = typer.Option([], help="Accept only these API keys (default: any non-empty key)."),
    tokens_per_delta: int = typer.Option(3, help="Tokens per streamed content_block_delta."),
    seed: int = typer.Option(
        0, help="Seed for random faults and jitter (reply content never depends on it)."
    ),
) -> None:
    """Run the Anthropic API simulator: /v1/messages (JSON and SSE), count_tokens, models, batches, files."""
    import uvicorn
    from rich.console import Console

    from claudegate.simulator.server import uvicorn_config
    from claudegate.simulator.settings import LatencyModel, SimulatorSettings, parse_fault_rate

    base = LatencyModel.realistic() if latency is Latency.realistic else LatencyModel.none()
    latency_model = LatencyModel(
        ttft_s=base.ttft_s if ttft_ms is None else ttft_ms / 1000,
        tokens_per_second=base.tokens_per_second if tokens_per_second is None else tokens_per_second,
        jitter=base.jitter if jitter is None else jitter,
    )
    try:
        faults = tuple(parse_fault_rate(spec) for spec in fault)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--fault") from None
    if not 0 < burst <= 10:
        raise typer.BadParameter("must lie in (0, 10]", param_hint="--burst")
    settings = SimulatorSettings(
        tier=tier.value,
        latency=latency_model,
        faults=faults,
        burst=burst,
        api_keys=frozenset(api_key),
        tokens_per_delta=tokens_per_delta,
        seed=seed,
    )
    Console(stderr=True).print(
        f"[bold]claudegate simulator[/bold] on http://{host}:{port}  tier={tier.value}  "
        f"latency={latency.value}  faults={', '.join(fault) or 'none'}"
    )
    uvicorn.Server(uvicorn_config(settings, host, port, log_level="info")).run()


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
