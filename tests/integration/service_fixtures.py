"""Fixtures for testing domain services with injected collaborators against real Azurite and the
Graph emulator, without a Functions host: each test gets its own tables (a fresh name prefix), a
fresh emulator tenant (graph_fixtures.SCENARIO), an application connection of a building to it,
and a guarded `GraphClient` on app tokens minted through the emulator's control API.

Import the fixtures into a test module, with the ones they build on: `world`, `table_service`
from here, `graph_emu` and `tenant` from tests/integration/graph_fixtures.py.
"""

from __future__ import annotations

import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.core.connection import Connection
from shared.graph.audit import AuditLog
from shared.graph.client import GraphClient
from shared.graph.guard import CalendarGuard
from shared.mapping.service import load_mapped
from shared.storage import tablestore
from shared.storage.tablestore import TableSource
from tests.integration.graph_fixtures import Tenant

ROLES = ["Calendars.ReadWrite", "Place.Read.All"]


class Tables:
    """A `TableSource` on tables of its own (prefixed names), deleted afterwards."""

    def __init__(self, service: TableServiceClient) -> None:
        self.service = service
        self.prefix = "t" + uuid.uuid4().hex[:10]
        self.made: dict[str, TableClient] = {}
        self.lock = threading.Lock()  # sync applies plans from a thread pool

    def __call__(self, name: str) -> TableClient:
        with self.lock:
            if name not in self.made:
                self.made[name] = self.service.create_table_if_not_exists(self.prefix + name)
            return self.made[name]

    def drop(self) -> None:
        for client in self.made.values():
            self.service.delete_table(client.table_name)


class AppTokens:
    """Application tokens of the emulator tenant (minted through its control API)."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.value: str | None = None

    def token(self, connection: Connection) -> str:
        if self.value is None:
            self.value = self.tenant.token(roles=ROLES)
        return self.value

    def invalidate(self, connection: Connection) -> None:
        self.value = None


@dataclass
class World:
    tenant: Tenant
    tables: TableSource
    graph: GraphClient
    connection: Connection

    @property
    def building(self) -> str:
        return self.connection.building_id

    def mailbox(self, nick: str) -> str:
        return self.tenant.upn(nick).lower()

    def connections(self) -> dict[str, Connection]:
        """A `ConnectionSource` (`.get(building)`) holding this building's connection."""
        return _Connections({self.building: self.connection})


class _Connections(dict[str, Connection]):
    """Connections by building, as the repository answers them; nothing cached to forget."""

    def forget(self, building_id: str) -> None:
        pass


@pytest.fixture(scope="module")
def table_service(azurite: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite)


@pytest.fixture(scope="module")
def tables(azurite: str) -> Iterator[Tables]:
    """The module's own tables (made on first use, dropped at the end)."""
    made = Tables(TableServiceClient.from_connection_string(azurite))
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture
def world(table_service: TableServiceClient, tenant: Tenant) -> Iterator[World]:
    tables = Tables(table_service)
    http = httpx.Client(
        verify=ssl.create_default_context(cafile=tenant.emu.ca_bundle), trust_env=False, timeout=30
    )
    graph = GraphClient(
        http,
        tenant.emu.graph_url,
        AppTokens(tenant),
        AuditLog(lambda: tables(tablestore.AUDIT)),
        guard=CalendarGuard(lambda building: load_mapped(tables, building)),
    )
    building = f"b-{uuid.uuid4().hex[:10]}"
    connection = Connection(
        building, str(uuid.uuid4()), "application", "connected", tenant.id,
        scopes=frozenset(ROLES),
    )  # fmt: skip
    try:
        yield World(tenant, tables, graph, connection)
    finally:
        http.close()
        tables.drop()
