"""Fixtures and helpers for the booking tests: a stack with fast outbox retries, and buildings
connected (application mode, admin consent) to a fresh copy of the demo tenant with their rooms
mapped through the real mapping API.

Each `booked_building` gets its own tenant (`fresh_tenant`): one calendar maps to one resource
across the whole app, so tests that map the demo rooms must not share a tenant.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.connect_fixtures import drive_authorize, fresh_tenant, query_of

# Outbox retries in seconds, not minutes, so tests can watch a booking go pending → synced.
FAST_OUTBOX = {
    "BB_OUTBOX_BACKOFF_SECONDS": "1",
    "BB_OUTBOX_BACKOFF_MAX_SECONDS": "2",
    "BB_OUTBOX_MAX_ATTEMPTS": "20",
}
ROOMS = ("boardroom4a", "huddle4b", "focus3c")


@pytest.fixture(scope="module")
def bstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("bookings-stack"), extra_settings=FAST_OUTBOX)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def bapi(bstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(bstack.endpoints, client_token(bstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def banon(bstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(bstack.endpoints) as client:
        yield client


@pytest.fixture(scope="module")
def bbrowser(bstack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        verify=ssl.create_default_context(cafile=bstack.endpoints["caBundle"]),
        trust_env=False,
        timeout=30,
    ) as client:
        yield client


@dataclass(frozen=True)
class Booked:
    """A connected building whose resources (one per demo room) are mapped to the room calendars."""

    building: str
    tenant: dict[str, Any]
    resources: dict[str, str]  # resource id → room mailbox
    calendars: dict[str, str]  # resource id → calendar id

    def mailbox(self, resource: str) -> str:
        return self.resources[resource]


def connect_application(
    stack: Stack, api: httpx.Client, anon: httpx.Client, browser: httpx.Client,
    building: str, tenant: dict[str, Any],
) -> None:  # fmt: skip
    """Connect a building in application mode: the tenant's admin grants admin consent."""
    admin = tenant["users"]["admin"]
    ensure_building(api, building)
    response = api.post(
        f"buildings/{building}/connection",
        json={"mode": "application", "tenant": tenant["domain"],
              "returnUrl": stack.endpoints["returnUrl"], "expectedAccount": admin["userPrincipalName"]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    callback = drive_authorize(
        browser, response.json()["authorizeUrl"], username=admin["userPrincipalName"],
        password=admin["password"], functions_base=stack.endpoints["functionsBaseUrl"],
    )  # fmt: skip
    done = anon.get(callback.removeprefix(stack.endpoints["functionsBaseUrl"] + "/"))
    assert done.status_code == 302, done.text
    assert query_of(done.headers["location"])["status"] == "connected", done.headers["location"]


def map_rooms(
    api: httpx.Client, building: str, tenant: dict[str, Any], *, time_zone: str,
    paid: tuple[str, ...] = (),
) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """One resource per demo room (`r-<room>`), each mapped to that room's calendar through the
    mapping API (PUT .../mapping), as an admin would."""
    listed = api.get(f"buildings/{building}/calendars")
    assert listed.status_code == 200, listed.text
    by_mailbox = {
        c["mailbox"].lower(): c for c in listed.json()["value"] if c.get("kind") == "room"
    }
    resources: dict[str, str] = {}
    calendars: dict[str, str] = {}
    for room in ROOMS:
        mailbox = tenant["users"][room]["mail"].lower()
        calendar = by_mailbox[mailbox]
        resource = f"r-{room}"
        put = api.put(
            f"buildings/{building}/resources/{resource}",
            json={"name": calendar["name"], "kind": "room", "timeZone": time_zone},
        )
        assert put.status_code in (200, 201), put.text
        mapped = api.put(
            f"buildings/{building}/resources/{resource}/mapping",
            json={"calendarId": calendar["id"], "mailbox": mailbox},
        )
        assert mapped.status_code == 200, mapped.text
        resources[resource] = mailbox
        calendars[resource] = calendar["id"]
    for resource in paid:
        put = api.put(
            f"buildings/{building}/resources/{resource}",
            json={"name": resource, "kind": "desk", "timeZone": time_zone, "paid": True},
        )
        assert put.status_code in (200, 201), put.text
    return resources, calendars


def booked_building(
    stack: Stack, api: httpx.Client, anon: httpx.Client, browser: httpx.Client,
    *, time_zone: str = "Europe/Amsterdam",
) -> Booked:  # fmt: skip
    tenant = fresh_tenant(stack)
    building = f"b-{uuid.uuid4().hex[:10]}"
    ensure_building(api, building, time_zone)
    connect_application(stack, api, anon, browser, building, tenant)
    resources, calendars = map_rooms(api, building, tenant, time_zone=time_zone)
    return Booked(building, tenant, resources, calendars)


# ---------------------------------------------------------------- the emulator side


def outlook_events(stack: Stack, mailbox: str, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event in a mailbox, as the emulator holds it (control API)."""
    response = stack.emulator.control.get(
        f"graph/users/{mailbox}/events", params={"tenant": tenant["id"]}
    )
    response.raise_for_status()
    body = response.json()
    return list(body.get("value", body) if isinstance(body, dict) else body)


def add_fault(stack: Stack, **rule: Any) -> None:
    response = stack.emulator.control.post("graph/faults", json=rule)
    response.raise_for_status()


def clear_faults(stack: Stack) -> None:
    stack.emulator.control.delete("graph/faults").raise_for_status()


def graph_stats(stack: Stack) -> dict[str, Any]:
    response = stack.emulator.control.get("stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats
