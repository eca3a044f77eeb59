"""Helpers for the sync-side e2e tests (webhook, subscriptions, sync worker).

Shared between features: add functions, do not change other features' ones.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.connect_fixtures import connect_application, query_of

# ---------------------------------------------------------------- building set-up (through the API)


def connect_building_application(
    stack: Stack, api: httpx.Client, anonymous: httpx.Client, building: str
) -> None:
    """Connect `building` to the stack's demo tenant in application mode (admin consent by the
    demo admin, auto-consented), through our real connect routes."""
    endpoints = stack.endpoints
    admin = stack.emulator.seed["tenant"]["users"]["admin"]
    with httpx.Client(verify=endpoints["caBundle"], trust_env=False, timeout=30) as browser:
        _, done = connect_application(
            api, anonymous, browser, endpoints, building, endpoints["tenantId"],
            login_hint=admin["userPrincipalName"],
        )  # fmt: skip
    assert query_of(done).get("status") == "connected", done


def map_room(api: httpx.Client, building: str, resource: str, room_mailbox: str) -> dict[str, Any]:
    """Create a free room resource and map it to a calendar of `room_mailbox` (any mailbox the
    connection can reach: a room, the account's own, one shared with it; the calendar id comes
    from our discovery route); returns the mapped resource."""
    put = api.put(
        f"buildings/{building}/resources/{resource}",
        json={"name": resource, "kind": "room", "paid": False, "timeZone": "Europe/Amsterdam",
              "capacity": 8},
    )  # fmt: skip
    assert put.status_code in (200, 201), put.text
    found = api.get(f"buildings/{building}/calendars", params={"mailbox": room_mailbox})
    assert found.status_code == 200, found.text
    calendars = [
        c for c in found.json()["value"] if str(c.get("mailbox", "")).lower() == room_mailbox
    ]
    assert calendars, found.json()
    mapped = api.put(
        f"buildings/{building}/resources/{resource}/mapping",
        json={"calendarId": calendars[0]["id"], "mailbox": room_mailbox},
    )
    assert mapped.status_code == 200, mapped.text
    return dict(mapped.json())


def new_building(prefix: str = "wh", api: httpx.Client | None = None, tz: str = "UTC") -> str:
    """A fresh building id; with `api`, the building is created too, in zone `tz` (the connect
    helpers create theirs themselves, in UTC, unless it exists)."""
    building = f"{prefix}-{uuid.uuid4().hex[:10]}"
    if api is not None:
        ensure_building(api, building, tz)
    return building


# ---------------------------------------------------------------- shared/ in the test process


@contextlib.contextmanager
def service_env(stack: Stack) -> Iterator[None]:
    """Point shared/ in this test process at `stack` (clients, settings and cached services are
    rebuilt on the way in and out), for service calls with an injected clock."""
    with stack.app_environment():
        yield


def emulator_now(stack: Stack) -> Any:
    """The emulator's clock (an aware datetime)."""
    from datetime import datetime

    clock = stack.emulator.control.get("clock")
    clock.raise_for_status()
    return datetime.fromisoformat(str(clock.json()["now"]).replace("Z", "+00:00"))


def emulator_subscriptions(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every subscription the Graph emulator holds, by id."""
    response = stack.emulator.control.get("graph/subscriptions")
    response.raise_for_status()
    body = response.json()
    items = body.get("value", body) if isinstance(body, dict) else body
    return {str(s["id"]): dict(s) for s in items}


def emulator_stats(stack: Stack) -> dict[str, Any]:
    response = stack.emulator.control.get("stats")
    response.raise_for_status()
    return dict(response.json())


# ---------------------------------------------------------------- the host


def run_function(stack: Stack, name: str, payload: str = "") -> None:
    """Run a timer or queue function now through the host's admin API (it runs asynchronously)."""
    base = stack.functions_url.removesuffix("/api")
    response = httpx.post(
        f"{base}/admin/functions/{name}",
        json={"input": payload},
        headers={"x-functions-key": stack.host.master_key},
        trust_env=False,
        timeout=10,
    )
    assert response.status_code == 202, response.text


class HostLog:
    """The Functions host's log (logs/functions.log), read from a mark onwards."""

    def __init__(self, stack: Stack) -> None:
        self.path = Path(stack.state_dir) / "logs" / "functions.log"
        self._mark = 0

    def mark(self) -> None:
        self._mark = self.path.stat().st_size if self.path.exists() else 0

    def lines(self, contains: str = "") -> list[str]:
        with self.path.open("rb") as f:
            f.seek(self._mark)
            text = f.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if contains in line]

    def wait_for(
        self, contains: str, *, timeout: float = 5.0, where: Callable[[str], bool] = bool
    ) -> list[str]:
        """Lines (since the mark) containing `contains` for which `where` holds, once any exist."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines(contains) if where(line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


def wait_until(check: Callable[[], Any], *, timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; that value, or the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# ---------------------------------------------------------------- sync worker (tests/e2e/test_sync.py,
# test_convergence.py, bench/bench_sync.py)

SYNC_SETTINGS = {
    # Poll shared calendars every few seconds (the interval doubles 2 s → 4 s while idle), so
    # "one polling interval" is short; the reconcile timer is run by hand.
    "BB_POLL_SCHEDULE": "*/1 * * * * *",
    "BB_POLL_MIN_SECONDS": "2",
    "BB_POLL_MAX_SECONDS": "4",
    "BB_SYNC_WINDOW_DAYS": "30",
    # The reconcile timer, run by hand, reconciles every calendar (no trust period): these tests
    # stand in for the trust period's expiry, hours away by default; which calendars a tick skips
    # is tested in tests/unit/test_reconcile_policy.py and tests/integration/test_sync_service.py.
    "BB_RECONCILE_TRUST_MINUTES": "0",
    # A failed queue message comes back after 1 s instead of 10 s.
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
}


def connect_building_delegated(
    stack: Stack, api: httpx.Client, anonymous: httpx.Client, building: str, upn: str
) -> None:
    """Connect `building` in delegated mode as the tenant user `upn` (auto-consented), through our
    real connect routes and the identity emulator."""
    from tests.e2e.connect_fixtures import drive_authorize

    endpoints = stack.endpoints
    ensure_building(api, building)
    started = api.post(
        f"buildings/{building}/connection",
        json={"mode": "delegated", "returnUrl": endpoints["returnUrl"], "loginHint": upn},
    )
    assert started.status_code == 200, started.text
    with httpx.Client(verify=endpoints["caBundle"], trust_env=False, timeout=30) as browser:
        callback = drive_authorize(
            browser, started.json()["authorizeUrl"], functions_base=endpoints["functionsBaseUrl"]
        )
    done = anonymous.get(callback.removeprefix(endpoints["functionsBaseUrl"] + "/"))
    assert done.status_code == 302, done.text
    assert query_of(done.headers["location"]).get("status") == "connected", done.headers


def map_discovered(
    api: httpx.Client, building: str, resource: str, pick: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Create a free room resource and map it to the first discovered calendar `pick` accepts
    (GET /buildings/{b}/calendars); returns the calendar as discovery showed it."""
    put = api.put(
        f"buildings/{building}/resources/{resource}",
        json={"name": resource, "kind": "room", "timeZone": "UTC"},
    )
    assert put.status_code in (200, 201), put.text
    found = api.get(f"buildings/{building}/calendars")
    assert found.status_code == 200, found.text
    chosen = [c for c in found.json()["value"] if pick(c)]
    assert chosen, found.json()
    mapped = api.put(
        f"buildings/{building}/resources/{resource}/mapping",
        json={"calendarId": chosen[0]["id"], "mailbox": chosen[0]["mailbox"]},
    )
    assert mapped.status_code == 200, mapped.text
    return dict(chosen[0])


def outlook(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    """An Outlook user's action through the emulator's control API (`/_emulator/graph/<path>`);
    the JSON answer, if any."""
    response = stack.emulator.control.request(method, f"graph/{path}", **kwargs)
    assert response.status_code < 300, (path, response.status_code, response.text)
    return response.json() if response.content else None


def graph_token(stack: Stack) -> str:
    """An app token for the Graph emulator (Calendars.Read), to read the truth independently of
    the app's code."""
    response = stack.emulator.control.post(
        "graph/token",
        json={
            "tenantId": stack.endpoints["tenantId"],
            "clientId": stack.endpoints["app"]["clientId"],
            "roles": ["Calendars.Read"],
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def calendar_view(
    stack: Stack, token: str, mailbox: str, calendar_id: str, start: Any, end: Any
) -> list[dict[str, Any]]:
    """What Graph shows in one calendar over [start, end): occurrences expanded, immutable ids,
    UTC times (the same request shape the worker's baseline makes)."""
    items: list[dict[str, Any]] = []
    url: str | None = (
        f"{stack.endpoints['graphBaseUrl']}/users/{mailbox}/calendars/{calendar_id}/calendarView"
    )
    params: dict[str, Any] | None = {
        "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "$top": "1000",
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Prefer": 'IdType="ImmutableId", outlook.timezone="UTC"',
    }
    with httpx.Client(verify=stack.endpoints["caBundle"], trust_env=False, timeout=30) as client:
        while url:
            response = client.get(url, params=params, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["value"])
            url, params = body.get("@odata.nextLink"), None
    return items


def queue_depth(stack: Stack, name: str = "notifications") -> int:
    """Messages in a queue (visible or not), from Azurite."""
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(stack.settings["AzureWebJobsStorage"], name)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # the queue does not exist yet
        return 0


def sync_quiet(stack: Stack, building_ids: list[str]) -> bool:
    """No sync request queued and no round running for the buildings (delta state leases)."""
    from datetime import UTC, datetime

    from shared.storage import clients, tablestore

    if queue_depth(stack) or queue_depth(stack, "graph-lifecycle"):
        return False
    now = datetime.now(UTC)
    table = clients.table(tablestore.DELTA_STATE)
    for building in building_ids:
        for row in tablestore.query_all(table, "PartitionKey eq @b", {"b": building}):
            until = row.get("leaseUntil")
            if until is not None and until > now:
                return False
    return True


def wait_sync_quiet(
    stack: Stack, building_ids: list[str], *, timeout: float = 30.0, settle: float = 0.5
) -> None:
    """Wait until `sync_quiet` holds for `settle` seconds in a row (needs `service_env`)."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if sync_quiet(stack, building_ids):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return
        else:
            quiet_since = None
        time.sleep(0.05)
    raise AssertionError(f"sync did not go quiet within {timeout} s")


def instances(
    stack: Stack, token: str, upn: str, master_id: str, start: Any, end: Any
) -> list[dict[str, Any]]:
    """A series' occurrences in [start, end) as Graph lists them (immutable ids), by start."""
    response = httpx.get(
        f"{stack.endpoints['graphBaseUrl']}/users/{upn}/events/{master_id}/instances",
        params={"startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
        headers={"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'},
        verify=stack.endpoints["caBundle"], trust_env=False, timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return sorted(response.json()["value"], key=lambda e: e["start"]["dateTime"])


# ---------------------------------------------------------------- what the app stored (privacy scans)


def everything_stored(stack: Stack) -> str:
    """Every entity of every table, every message still in a queue (poison queues included) and
    the Functions host's log, as one lower-cased text: what privacy mode promises to keep free of
    external event content. The app writes no blobs; the emulators' own state and logs are
    Microsoft's side, not ours."""
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient, TextBase64DecodePolicy

    connection = stack.endpoints["storage"]
    parts: list[str] = []
    with TableServiceClient.from_connection_string(connection) as tables:
        for table in tables.list_tables():
            client = tables.get_table_client(table.name)
            parts.extend(repr(dict(entity)) for entity in client.list_entities())
    with QueueServiceClient.from_connection_string(connection) as queues:
        for queue in queues.list_queues():
            client = queues.get_queue_client(
                queue.name, message_decode_policy=TextBase64DecodePolicy()
            )
            parts.extend(str(m.content) for m in client.peek_messages(max_messages=32))
    parts.extend(HostLog(stack).lines())
    return "\n".join(parts).lower()
