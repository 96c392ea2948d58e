"""``claudegate models``: the model catalogue, and how it compares with what an upstream serves.

``models sync`` reads the upstream's ``GET /v1/models`` (every page, every lifecycle stage) and reports:

- **missing**: models the upstream serves that ``data/models.toml`` does not know (they would get no lane of
  their own and, in the simulator, a 404);
- **unpriced**: models the upstream serves that no price row covers (their calls would be recorded without
  a cost);
- **changed**: lifecycle stages, dates and sizes that differ (the catalogue should follow);
- **not upstream**: catalogue models the upstream does not list.

It exits 1 when anything is missing or unpriced, so a scheduled job can alert on it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import typer
from rich.table import Table

from claudegate.accounting.prices import PriceTable, PriceTableError
from claudegate.cli._store import ConfigOption, JsonOption, fail, print_table
from claudegate.config import ConfigError, Settings
from claudegate.wire.models import LIFECYCLES, ModelCatalog, default_catalog

__all__ = ["SyncReport", "compare", "register"]

# Fields compared between the catalogue's and the upstream's description of a model.
_COMPARED = ("lifecycle", "deprecated_at", "retires_at", "max_input_tokens", "max_tokens")

models_app = typer.Typer(
    help="The model catalogue: compare it with an upstream's models.", no_args_is_help=True
)


@dataclass(slots=True)
class SyncReport:
    upstream: str
    missing: list[dict[str, Any]] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    not_upstream: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unpriced

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare(
    upstream: str, served: list[dict[str, Any]], catalog: ModelCatalog, prices: PriceTable
) -> SyncReport:
    """The differences between the upstream's models (``GET /v1/models`` items) and the catalogue."""
    report = SyncReport(upstream=upstream)
    seen: set[str] = set()
    for item in served:
        model_id = str(item.get("id"))
        lifecycle = item.get("lifecycle")
        known = catalog.resolve(model_id)
        if known is None:
            report.missing.append(
                {"id": model_id, "display_name": item.get("display_name"), "lifecycle": lifecycle}
            )
        else:
            seen.add(known.id)
            ours = known.to_api()
            for name in _COMPARED:
                theirs = item.get(name)
                if theirs is not None and _normal(theirs) != _normal(ours.get(name)):
                    report.changed.append(
                        {"id": model_id, "field": name, "catalogue": ours.get(name), "upstream": theirs}
                    )
        if lifecycle != "retired" and prices.price(model_id) is None:
            report.unpriced.append(model_id)
    report.not_upstream = [model.id for model in catalog.models if model.id not in seen]
    return report


def _normal(value: Any) -> Any:
    # Dates compare by day: the API and the catalogue may write the same date with or without a time.
    return value[:10] if isinstance(value, str) and len(value) >= 10 and value[4] == "-" else value


def _fetch(base_url: str, api_key: str) -> list[dict[str, Any]]:
    import anthropic  # the official client pages through the list; imported here to keep the CLI fast

    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=2)
    try:
        return [
            model.to_dict(mode="json") for model in client.models.list(limit=1000, lifecycle=list(LIFECYCLES))
        ]
    except anthropic.APIError as error:
        fail(f"GET {base_url}/v1/models failed: {error}")
    finally:
        client.close()


@models_app.command("sync")
def sync(
    config: ConfigOption = None,
    upstream_url: str | None = typer.Option(
        None,
        help="The API to compare with (default: the configured upstream, else https://api.anthropic.com).",
    ),
    as_json: JsonOption = False,
) -> None:
    """Compare data/models.toml and the price table with the upstream's GET /v1/models.

    Exits 1 when the upstream serves a model the catalogue lacks or no price covers.
    """
    try:
        settings = Settings.load(config)
        prices = PriceTable.load(settings.prices_file)
    except (ConfigError, PriceTableError) as error:
        fail(str(error))
    base_url = upstream_url or settings.resolved_upstream_url or "https://api.anthropic.com"
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    key = key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        fail("no API key: set ANTHROPIC_API_KEY (or anthropic_api_key in the settings file)")
    report = compare(base_url, _fetch(base_url, key), default_catalog(), prices)
    if as_json:
        typer.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: SyncReport) -> None:
    typer.echo(f"Compared with {report.upstream}/v1/models")
    if report.ok and not report.changed:
        typer.echo("The catalogue and the price table cover every model the upstream serves.")
    table = Table("problem", "model", "detail")
    for item in report.missing:
        table.add_row(
            "missing", item["id"], f"{item['display_name']} ({item['lifecycle']}): add to models.toml"
        )
    for model_id in report.unpriced:
        table.add_row("unpriced", model_id, "add a row to prices.toml or the prices_file")
    for change in report.changed:
        table.add_row(
            "changed",
            change["id"],
            f"{change['field']}: {change['catalogue']} here, {change['upstream']} upstream",
        )
    for model_id in report.not_upstream:
        table.add_row("not upstream", model_id, "listed here, not by the upstream")
    if table.rows:
        print_table(table)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
