"""Fixtures shared by every test tier: free ports and an Azurite per test session.

Azurite runs in memory on free ports and is stopped at the end of the session, even when tests
fail; tests that need isolation use their own queue/table names rather than their own Azurite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite, start_azurite
from devstack.procs import free_port as _free_port

TIERS = ("unit", "integration", "e2e", "devstack")  # folders under tests/, one marker each
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from its folder, so `-m unit` (make test-fast) selects a tier."""
    for item in items:
        parts = item.path.resolve().relative_to(_TESTS).parts
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


@pytest.fixture
def free_port() -> int:
    """A TCP port free on loopback right now."""
    return _free_port()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """The session's Azurite (in memory, free ports), for tests that need its ports or log."""
    server = start_azurite(log_path=tmp_path_factory.mktemp("azurite") / "azurite.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(azurite_server: Azurite) -> str:
    """The connection string of the session's Azurite."""
    return azurite_server.connection_string
