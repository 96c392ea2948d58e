"""The gateway in front of an upstream over HTTPS, as Anthropic's API is reached: the official SDK's calls,
JSON and streamed, pass through a verified TLS connection; an upstream whose certificate the gateway does not
trust is not used, and the SDK sees the gateway's error saying why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
import trustme

from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import SimulatorSettings
from tests.e2e.conftest import make_tenant
from tests.e2e.flow_support import client, gateway, gateway_settings, messages
from tests.servers import running_in_thread

MODEL = "claude-sonnet-4-6"


class TlsSimulator(SimulatorServer):
    """The simulator behind a certificate for ``localhost``."""

    def __init__(self, certificate: Path) -> None:
        super().__init__(SimulatorSettings())
        self._server.config.ssl_certfile = str(certificate)  # read when the server starts

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_simulator(authority: trustme.CA, tmp_path: Path) -> Iterator[TlsSimulator]:
    certificate = tmp_path / "localhost.pem"  # key and chain in one file, as uvicorn accepts
    authority.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(certificate))
    with running_in_thread(lambda: TlsSimulator(certificate)) as server:
        assert isinstance(server, TlsSimulator)
        yield server


async def test_calls_reach_an_https_upstream_that_the_gateway_trusts(
    tls_simulator: TlsSimulator,
    authority: trustme.CA,
    flow_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # How an operator trusts a private CA: the standard OpenSSL variable, read when the first HTTPS
    # connection is made.
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    tenant = await make_tenant(flow_database_url, f"tls-{uuid.uuid4().hex[:8]}")

    with gateway(gateway_settings(tls_simulator.url, flow_database_url, tmp_path)) as server:
        sdk = client(server.url, tenant.key)
        reply = await sdk.messages.create(model=MODEL, max_tokens=30, messages=messages("over TLS"))
        assert reply.type == "message"
        assert reply.content
        assert reply.usage.output_tokens > 0

        async with sdk.messages.stream(model=MODEL, max_tokens=30, messages=messages("streamed")) as stream:
            events = [event.type async for event in stream]
            final = await stream.get_final_message()
        assert events[0] == "message_start"
        assert events[-1] == "message_stop"
        assert final.usage.output_tokens > 0


async def test_an_https_upstream_with_an_untrusted_certificate_is_not_used(
    tls_simulator: TlsSimulator, flow_database_url: str, tmp_path: Path
) -> None:
    tenant = await make_tenant(flow_database_url, f"tls-untrusted-{uuid.uuid4().hex[:8]}")
    settings = gateway_settings(tls_simulator.url, flow_database_url, tmp_path, retry_max_attempts=1)
    with gateway(settings) as server, pytest.raises(anthropic.InternalServerError) as raised:
        await client(server.url, tenant.key).messages.create(
            model=MODEL, max_tokens=30, messages=messages("untrusted")
        )
    assert raised.value.status_code == 500  # api_error, as the gateway answers for an unreachable upstream
    assert "could not be reached" in str(raised.value)
    assert "certificate" in str(raised.value).lower()
