"""The dashboard and alert rules shipped in deploy/: Prometheus's own tools accept them, every metric they
name is one the gateway exports, and a real Prometheus scrapes a running gateway with the rules loaded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import pytest
import yaml

from claudegate.accounting.metrics import GatewayMetrics
from tests.conftest import need_service
from tests.gateway_process import free_port, gateway_env, running_gateway, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "claudegate.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    need_service(path is not None, f"{name} (Debian package prometheus)")
    assert path is not None
    return path


def _exported_names() -> set[str]:
    """Every series name the gateway's /metrics can hold."""
    names = set()
    for family in GatewayMetrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queries += [
        variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable
    ]
    return queries


def _alert_queries() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_alerts_name_is_exported() -> None:
    exported = _exported_names()
    queries = _dashboard_queries() + _alert_queries()
    named = {name for query in queries for name in re.findall(r"\bclaudegate_[a-z_]+", query)}
    assert named, "no query names a claudegate metric"
    assert named <= exported, f"not exported: {sorted(named - exported)}"
    # And the dashboard covers what operators watch.
    for metric in (
        "claudegate_requests_total",
        "claudegate_request_duration_seconds_bucket",
        "claudegate_time_to_first_token_seconds_bucket",
        "claudegate_tokens_total",
        "claudegate_cost_usd_total",
        "claudegate_queue_waiting_calls",
        "claudegate_refusals_total",
        "claudegate_upstream_breaker_state",
        "claudegate_usage_records_pending",
    ):
        assert metric in named


def test_promtool_accepts_the_alert_rules_and_the_dashboard_queries(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout
    # Each dashboard query, with Grafana's variables filled in, as a recording rule: promtool parses it.
    filled = [
        query.replace("$__rate_interval", "5m")
        .replace("$job", ".*")
        .replace("$org", ".*")
        .replace("$model", ".*")
        for query in _dashboard_queries()
        if not query.startswith("label_values(")
    ]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": q} for i, q in enumerate(filled)],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    parsed = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "dashboard.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        return list(json.load(reply)["data"]["result"])


def _until(description: str, check: Any, timeout_s: float = 60.0) -> Any:
    """Poll another process until ``check()`` gives something truthy."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        found = check()
        if found:
            return found
        time.sleep(0.2)  # waiting on Prometheus's scrape loop, a separate process
    raise AssertionError(f"timed out waiting for {description}")


@pytest.fixture
def prometheus_binary() -> str:
    return _tool("prometheus")


@contextmanager
def _running_prometheus(binary: str, target_port: int, workdir: Path) -> Iterator[str]:
    port = free_port()
    shutil.copy(ALERTS, workdir / "alerts.yml")
    (workdir / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": ["alerts.yml"],
                "scrape_configs": [
                    {"job_name": "claudegate", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
                ],
            }
        )
    )
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/-/ready", process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def test_prometheus_scrapes_a_running_gateway_with_the_rules_loaded(
    prometheus_binary: str, tmp_path: Path
) -> None:
    env = gateway_env(tmp_path / "home")
    created = subprocess.run(
        [sys.executable, "-m", "claudegate", "keys", "create", "--org", "acme", "--json"],
        env=env,
        capture_output=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    with running_gateway(env, tmp_path) as gateway:
        client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hello"}]
        )
        with _running_prometheus(prometheus_binary, gateway.port, tmp_path) as prometheus:
            calls = _until(
                "the gateway's calls in Prometheus",
                lambda: _query(prometheus, 'claudegate_requests_total{job="claudegate", org="acme"}'),
            )
            assert calls[0]["metric"]["model"] == "claude-sonnet-4-6"
            assert calls[0]["metric"]["status"] == "200"
            assert float(calls[0]["value"][1]) == 1.0
            tokens = _query(prometheus, 'sum by (kind) (claudegate_tokens_total{org="acme"})')
            assert {series["metric"]["kind"] for series in tokens} >= {"input", "output"}
            breaker = _query(prometheus, "claudegate_upstream_breaker_state")
            assert [(s["metric"]["upstream"], s["value"][1]) for s in breaker] == [("simulator", "0")]
            with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5) as reply:
                groups = json.load(reply)["data"]["groups"]
            assert {rule["name"] for group in groups for rule in group["rules"]} >= {
                "ClaudegateDown",
                "ClaudegateUpstreamBreakerOpen",
                "ClaudegateUsageRecordsPending",
            }
            up = _query(prometheus, 'up{job="claudegate"}')
            assert up[0]["value"][1] == "1"
