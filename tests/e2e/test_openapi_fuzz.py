"""Every route in the gateway's OpenAPI description (``GET /openapi.json``), fuzzed with schemathesis
against a running gateway (and the simulator behind it) over loopback, on SQLite and on PostgreSQL: no
input, valid or not, may get a 5xx the gateway made, or hang. And the description leaves no route out: every
path and method the gateway answers is described, so a route added without its description fails here.

A 5xx the upstream made, relayed as it came (Anthropic's envelope, without ``x-claudegate-origin``), is the
upstream's answer, not the gateway's failure: the simulator has tests of its own. Every operation gets
``EXAMPLES`` inputs; the console's copies of the admin and chat operations, whose handlers those operations
fuzz already, get ``CONSOLE_EXAMPLES`` (what they add is the console's forwarding). About 40 s a database.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis.generation import GenerationMode
from starlette.applications import Starlette
from starlette.routing import Mount, Route

import claudegate
from claudegate.console import console_app
from claudegate.console.app import KEY_HEADER
from claudegate.console.session import COOKIE, CSRF_HEADER
from claudegate.server.admin import AdminDeps, admin_routes
from claudegate.store.migrate import upgrade_database
from tests.databases import fresh_postgres_database
from tests.e2e.conftest import GatewayServer, Tenant, gateway_settings, make_tenant
from tests.servers import running_in_thread

ADMIN_TOKEN = "admin-token-for-fuzzing"
EXAMPLES = 25
CONSOLE_EXAMPLES = 8
# Path parameters for the inputs that break everything else. The shapes of ids in paths are checked by the
# gateway's routes (a malformed id is a 404 there); these fuzz what comes with a well-formed one.
WELL_SHAPED = {
    "model_id": "claude-sonnet-4-6",
    "batch_id": "msgbatch_0fuzz",
    "chat_id": "chat_0fuzz",
    "org": "fuzz-org",
    "user": "alice",
    "name": "greeting",
    "key_id": 1,
}
SRC = Path(claudegate.__file__).parent
REPLY_TIMEOUT_S = 10.0  # a reply slower than this is a hang (the simulator behind answers at once)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    key: str
    schema: Any
    headers: dict[str, dict[str, str]]  # by kind of route (``_kind``): what authenticates a call
    well_shaped: dict[str, Any]  # path parameters: WELL_SHAPED, with a file of the tenant's own
    server: GatewayServer
    database_url: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def target(
    request: pytest.FixtureRequest, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    """A gateway of its own, on a database of its own (the fuzzer creates organisations, keys and prompts)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        async for target in _serve(f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", simulator_url, tmp):
            yield target
        return
    async with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
        async for target in _serve(url, simulator_url, tmp):
            yield target


async def _serve(database_url: str, simulator_url: str, tmp: Path) -> AsyncIterator[Target]:
    await upgrade_database(database_url)
    tenant = await make_tenant(database_url, f"fuzz-{uuid.uuid4().hex[:8]}")
    # Routes the gateway does not know are answered 404 rather than relayed: they are not in the description.
    config = gateway_settings(simulator_url, database_url, tmp).model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN), "pass_unknown_routes": False}
    )
    with running_in_thread(lambda: GatewayServer(config)) as server:
        assert isinstance(server, GatewayServer)
        headers = await _credentials(server.url, tenant)
        async with httpx2.AsyncClient(base_url=server.url, timeout=REPLY_TIMEOUT_S) as http:
            uploaded = await http.post(
                "/v1/files",
                headers={**headers["anthropic"], "x-simulator-downloadable": "true"},
                files={"file": ("fuzz.txt", b"a file to fuzz with", "text/plain")},
            )
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield Target(
            url=server.url,
            key=tenant.key,
            schema=schema,
            headers=headers,
            # The fuzzer revokes and changes the key it is given: never the one it calls with.
            well_shaped={**WELL_SHAPED, "file_id": uploaded.json()["id"], "key_id": tenant.user_key_id},
            server=server,
            database_url=database_url,
        )


async def _credentials(url: str, tenant: Tenant) -> dict[str, dict[str, str]]:
    """What authenticates a call, by kind of route: a console session is signed in here, as an operator."""
    async with httpx2.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT_S) as http:
        signed_in = await http.post("/console/sign-in", json={"token": ADMIN_TOKEN})
        cookie = {"cookie": f"{COOKIE}={signed_in.cookies[COOKIE]}"}
        me = await http.get("/console/api/me", headers=cookie)
    return {
        "admin": {"authorization": f"Bearer {ADMIN_TOKEN}"},
        "console": {**cookie, CSRF_HEADER: me.json()["csrf"], KEY_HEADER: str(tenant.key_id)},
        "openai": {"authorization": f"Bearer {tenant.key}"},
        "anthropic": {"x-api-key": tenant.key, "anthropic-version": "2023-06-01"},
    }


def _kind(path: str) -> str:
    if path.startswith("/admin"):
        return "admin"
    if path.startswith("/console"):
        return "console"
    if path == "/v1/chat/completions":
        return "openai"
    return "anthropic"


def test_no_input_gets_a_5xx_from_the_gateway(target: Target) -> None:
    operations = [result.ok() for result in target.schema.get_all_operations()]
    assert len(operations) >= 80  # every route is described (a shrunken description would fuzz little)
    for operation in operations:
        fuzz_operation(operation, target)


def fuzz_operation(operation: Any, target: Target) -> None:
    """Inputs for one operation (``_examples``) that fit its description, and that do not (bodies,
    queries and headers that break it, with well-shaped path parameters)."""
    fixed = {
        parameter.name: target.well_shaped[parameter.name]
        for parameter in operation.path_parameters
        if parameter.name in target.well_shaped
    }
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE, path_parameters=fixed
    )

    @given(case=strategy)
    @settings(
        max_examples=_examples(operation.path),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same inputs on every run: a failure here is reproducible, never flaky
        database=None,
    )
    def run(case: Any) -> None:
        check(case, target)

    run()


def _examples(path: str) -> int:
    mirrored = path.startswith("/console/api/") and path != "/console/api/me"
    return CONSOLE_EXAMPLES if mirrored else EXAMPLES


def check(case: Any, target: Target) -> None:
    kind = _kind(case.path)
    _check_reply(case, target, target.headers[kind])
    if case.path.startswith("/v1/models"):
        # The same route in OpenAI's shape: what OpenAI's SDKs send (a bearer token, no anthropic-version).
        _check_reply(case, target, target.headers["openai"], drop=("x-api-key", "anthropic-version"))


def _check_reply(case: Any, target: Target, headers: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    if case.headers:
        for name in drop:
            case.headers.pop(name, None)
    response = case.call(base_url=target.url, headers=headers, timeout=REPLY_TIMEOUT_S)
    if response.status_code < 500:
        return
    relayed = response.headers.get("x-claudegate-origin") != "gateway" and _is_envelope(response)
    assert relayed, (
        f"{case.method} {case.formatted_path} gave {response.status_code}: {response.text[:500]}\n"
        f"reproduce with: {case.as_curl_command(headers=headers)}"
    )


def _is_envelope(response: Any) -> bool:
    """Anthropic's error envelope, or OpenAI's (the OpenAI routes translate the upstream's errors)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (body.get("type") == "error" or isinstance(body.get("error"), dict))


# Route coverage: what the gateway serves, against what it describes.

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # HEAD is GET without a body; OPTIONS is not served
ROUTE_SOURCES = (SRC / "server", SRC / "console")
# What the routers answer for a path or a method they do not serve (besides 405).
NOT_A_ROUTE = ("is not a route of this API", "no admin endpoint", "no console page", "no console API")
PROBE_VALUES = {
    **WELL_SHAPED,
    "key_id": 999_999,  # no such key: a probe never revokes or changes one
    "batch_id": "msgbatch_0probe",
    "file_id": "file_0probe",
    "file": "console.js",
}
_PATH_LITERAL = re.compile(r"^/[A-Za-z0-9_.{}:/-]*$")
_PARAMETER = re.compile(r"\{([A-Za-z_]+)(?::path)?\}")


async def test_every_route_the_gateway_serves_is_described(target: Target) -> None:
    """Every path and method the gateway answers (anything but a 405 or a router's "not a route" 404) is in
    its description, and everything described is answered. The paths probed are the description's, every
    path written in the routing modules, the routes of the admin API's and the console's routers, and one
    segment more under each of those without parameters."""
    # Credentials of its own: the fuzzer may have revoked its tenant's keys, and a 401 would hide a 405.
    tenant = await make_tenant(target.database_url, f"routes-{uuid.uuid4().hex[:8]}")
    headers = await _credentials(target.url, tenant)
    spec = httpx2.get(f"{target.url}/openapi.json").json()
    described = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    candidates = {path for _, path in described} | _path_literals() | _router_paths(target.server)
    candidates |= {"/console/api" + path for path in candidates if path.startswith(("/admin/", "/chat"))}
    # One segment more under each: a route that takes an id where none is described shows here.
    candidates |= {path.rstrip("/") + "/probe" for path in candidates if "{" not in path}
    with httpx2.Client(base_url=target.url, timeout=REPLY_TIMEOUT_S) as http:
        served = {
            (method, _template(path, described))
            for path in candidates
            for method in METHODS
            if _is_served(http, method, path, headers)
        }
    assert served - described == set(), "routes the gateway serves but its description leaves out"
    assert described - served == set(), "routes described that the gateway does not serve"


def _path_literals() -> set[str]:
    """Every string in the routing modules that looks like a path (the gateway's ``path == "/…"``)."""
    found = set()
    for folder in ROUTE_SOURCES:
        for module in folder.glob("*.py"):
            if module.name.startswith("openapi"):
                continue
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
                if is_text and _PATH_LITERAL.match(node.value) and node.value != "/":
                    found.add(node.value)
    return found


def _router_paths(server: GatewayServer) -> set[str]:
    """The templates of the admin API's routes (mounted at /admin) and of the console's."""
    services = server.gateway.services
    admin = admin_routes(AdminDeps(store=services.store, resolver=services.resolver, admin_token=None))
    paths = {"/admin" + route.path for route in admin if isinstance(route, Route)}
    for route in console_app(services, Starlette()).routes:
        if isinstance(route, Mount):
            paths.add(route.path + "/{file}")
        elif isinstance(route, Route):
            paths.add(route.path)
    return paths


def _is_served(http: httpx2.Client, method: str, template: str, headers: dict[str, dict[str, str]]) -> bool:
    path = _PARAMETER.sub(lambda match: str(PROBE_VALUES.get(match.group(1), "probe")), template)
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    sent = {**headers[_kind(path)], "content-type": "application/json"}
    reply = http.request(method, path, headers=sent, content=body)
    if reply.status_code == 405:
        return False
    return not (reply.status_code == 404 and any(words in reply.text for words in NOT_A_ROUTE))


def _template(path: str, described: set[tuple[str, str]]) -> str:
    """The described template a probed path is an instance of (itself when none is)."""
    path = path.rstrip("/") if path not in ("/console/",) else path
    path = _PARAMETER.sub(lambda match: "{" + match.group(1) + "}", path)
    templates = {template for _, template in described}
    if path in templates:
        return path
    for template in sorted(templates):
        if _same_template(path, template):
            return template
    return path


def _same_template(path: str, template: str) -> bool:
    pattern = re.sub(r"\\\{[A-Za-z_]+\\\}", "[^/]+", re.escape(template))
    concrete = _PARAMETER.sub("x", path)
    return re.fullmatch(pattern, concrete) is not None
