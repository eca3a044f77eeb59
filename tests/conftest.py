"""Fixtures shared by every test tier: free ports and an Azurite per test session.

Azurite runs in memory on free ports and is stopped at the end of the session, even when tests
fail; tests that need isolation use their own queue/table names rather than their own Azurite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.azurite import Azurite, start_azurite
from devstack.procs import free_port as _free_port


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
