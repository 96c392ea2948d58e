"""Shared test configuration.

Tests that need a real server (PostgreSQL, Redis, an IRC server, Node.js) skip with a visible reason when it
cannot be reached on a developer's machine. CI sets CLAUDEGATE_REQUIRE_SERVICES=1, which turns every such
skip into a failure: a suite that silently skipped its database tests would prove nothing.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "CLAUDEGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLAUDEGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("CLAUDEGATE_REQUIRE_SERVICES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    """Keep what tests store out of the developer's own data directory: settings that name no database
    use a data directory of the session's (tests of the default directory unset it)."""
    if "CLAUDEGATE_HOME" not in os.environ:
        os.environ["CLAUDEGATE_HOME"] = tempfile.mkdtemp(prefix="claudegate-test-home-")


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), 2):
            return True
    except OSError:
        return False


def need_service(available: bool, reason: str) -> None:
    """Skip (or, under CLAUDEGATE_REQUIRE_SERVICES=1, fail) a test whose server is missing."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(f"service unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    need_service(reachable(POSTGRES_URL, 5432), f"PostgreSQL at {POSTGRES_URL}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    need_service(reachable(REDIS_URL, 6379), f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(scope="session")
def simulator_url() -> Iterator[str]:
    """A simulator with no rate limits and no latency, shared by the whole session."""
    from claudegate.simulator.server import SimulatorServer
    from claudegate.simulator.settings import SimulatorSettings
    from tests.servers import running_in_thread

    with running_in_thread(lambda: SimulatorServer(SimulatorSettings())) as server:
        yield server.url  # type: ignore[attr-defined]
