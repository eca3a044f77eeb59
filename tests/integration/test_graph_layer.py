"""The Graph access layer against the Graph emulator with real tokens (client credentials via
MSAL): per-mailbox concurrency, Retry-After, and bounded retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests

from devstack.m365 import RunningEmulator, start_emulator
from devstack.stack import DEMO_SCENARIO
from devstack.tls import ensure_tls
from shared.connect.tokens import Identity
from shared.core.connection import Connection
from shared.core.errors import GraphError
from shared.graph.client import GraphClient, RetryPolicy
from shared.storage.keyvault import AppCredential

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    tls = ensure_tls(tmp_path_factory.mktemp("tls"))
    running = start_emulator(tls.ca_cert.parent, scenario=DEMO_SCENARIO)
    try:
        yield running
    finally:
        running.stop()


class AppTokens:
    """Client-credentials tokens from the identity emulator, through our `Identity` (real MSAL)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.token_value: str | None = None
        self.lock = threading.Lock()

    def token(self, connection: Connection) -> str:
        with self.lock:
            if self.token_value is None:
                self.token_value = self.identity.app_token(connection.tenant_id).access_token
            return self.token_value

    def invalidate(self, connection: Connection) -> None:
        self.token_value = None


@pytest.fixture(scope="module")
def setup(emu: RunningEmulator) -> Iterator[tuple[httpx.Client, AppTokens, Connection, str]]:
    seed = emu.seed
    app = seed["apps"]["bookingbridge"]
    tenant = seed["tenant"]
    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_bundle
    identity = Identity(
        app["clientId"], emu.base_url, lambda: AppCredential("secret", app["clientSecret"]), session
    )
    http = httpx.Client(verify=emu.ca_bundle, trust_env=False, timeout=20)
    connection = Connection("b-graph", "conn-graph", "application", "connected", tenant["id"])
    room = tenant["users"]["boardroom4a"]["userPrincipalName"]
    yield http, AppTokens(identity), connection, room
    http.close()


@pytest.fixture(autouse=True)
def clean_faults(emu: RunningEmulator) -> Iterator[None]:
    emu.control.delete("graph/faults")
    yield
    emu.control.delete("graph/faults")


def add_fault(emu: RunningEmulator, **rule: Any) -> None:
    response = emu.control.post("graph/faults", json={"rules": [rule]})
    assert response.status_code == 200, response.text


def throttled(emu: RunningEmulator) -> int:
    return int(emu.control.get("stats").json()["throttled"])


def graph(emu: RunningEmulator, setup: Any, **policy: Any) -> tuple[GraphClient, list[float]]:
    http, tokens, _, _ = setup
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)  # the client's own back-off, really waited: Retry-After is real time

    return GraphClient(http, emu.graph_url, tokens, None, RetryPolicy(**policy), sleep=sleep), waits


def test_twenty_concurrent_calls_to_one_mailbox_are_never_throttled(
    emu: RunningEmulator, setup: Any
) -> None:
    http, tokens, connection, room = setup
    add_fault(emu, path="/users/*/calendars", latencyMs=150)  # slow enough to overlap
    client, waits = graph(emu, setup)
    before = throttled(emu)
    with ThreadPoolExecutor(20) as pool:
        results = list(
            pool.map(
                lambda _: client.request(connection, "GET", f"/users/{room}/calendars"), range(20)
            )
        )
    assert all(r.status_code == 200 for r in results)
    assert throttled(emu) == before and waits == []
    # The control: the same burst without the layer's per-mailbox limit is throttled.
    token = tokens.token(connection)
    with ThreadPoolExecutor(20) as pool:
        raw = list(
            pool.map(
                lambda _: http.get(
                    f"{emu.graph_url}/users/{room}/calendars",
                    headers={"Authorization": f"Bearer {token}"},
                ),
                range(20),
            )
        )
    assert any(r.status_code == 429 for r in raw)
    assert throttled(emu) > before


def test_429_is_retried_after_retry_after(emu: RunningEmulator, setup: Any) -> None:
    _, _, connection, room = setup
    add_fault(emu, path="/users/*/calendars", status=429, retryAfter=1, count=2)
    client, waits = graph(emu, setup, jitter=0.1)
    started = time.monotonic()
    response = client.request(connection, "GET", f"/users/{room}/calendars")
    assert response.status_code == 200
    assert len(waits) == 2 and all(1.0 <= w <= 1.1 for w in waits)
    assert time.monotonic() - started >= 2.0


def test_a_permanent_503_ends_with_graph_error_in_bounded_time(
    emu: RunningEmulator, setup: Any
) -> None:
    _, _, connection, room = setup
    add_fault(emu, path="/users/*/calendars", status=503)
    client, waits = graph(emu, setup, max_attempts=4, base_delay=0.1, max_total_wait=5)
    with pytest.raises(GraphError) as raised:
        client.request(connection, "GET", f"/users/{room}/calendars")
    assert raised.value.failure.status == 503 and raised.value.transient
    assert raised.value.failure.request_id
    assert len(waits) == 3 and sum(waits) <= 5  # within the client's own budget


def test_free_busy_rounds_ask_getschedule_about_their_group_at_once(
    emu: RunningEmulator, setup: Any
) -> None:
    """Issue 19: one getSchedule serves a group of free/busy calendars; the others' rounds reuse
    the answer while it is fresh, and only status, start and end reach the items."""
    from datetime import UTC, datetime, timedelta

    from shared.graph.guard import DEFAULT_CALENDAR, MappedCalendar
    from shared.sync import freebusy
    from shared.sync.plan import Window
    from tests.waiting import wait_for

    client, _ = graph(emu, setup)
    _, _, connection, _ = setup
    users = emu.seed["tenant"]["users"]
    mailboxes = [users[n]["userPrincipalName"].lower() for n in ("boardroom4a", "huddle4b")]
    calendars = [
        MappedCalendar("b-graph", f"r{n}", connection.tenant_id, DEFAULT_CALENDAR, m, m, True)
        for n, m in enumerate(mailboxes)
    ]
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                            microsecond=0)  # fmt: skip
    made = emu.control.post(
        f"graph/users/{users['emma']['userPrincipalName']}/events",
        json={"subject": "Secret plans",
              "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
              "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                      "timeZone": "UTC"},
              "attendees": [{"emailAddress": {"address": mailboxes[1]}, "type": "resource"}]},
    )  # fmt: skip
    assert made.status_code < 300, made.text

    def in_the_room() -> Any:
        listed = emu.control.get(f"graph/users/{mailboxes[1]}/events").json()
        return listed.get("value", listed) if isinstance(listed, dict) else listed

    # The room's attendant puts the meeting on its calendar a moment after the invitation.
    wait_for(in_the_room, timeout=10, what="the meeting on the huddle room's calendar")
    scope = client.for_calendars(connection, calendars)
    window = Window(start - timedelta(hours=1), start + timedelta(hours=2))
    first, asked = freebusy.schedule_items(
        scope, connection, calendars[0], window, peers=calendars[1:], fresh_seconds=60
    )
    assert asked == 1 and first == []  # the board room is free then
    second, asked = freebusy.schedule_items(
        scope, connection, calendars[1], window, peers=calendars[:1], fresh_seconds=60
    )
    assert asked == 0, "the huddle room's answer came with the board room's request"
    (item,) = second
    assert set(item) == {"id", "start", "end", "showAs"} and item["showAs"] == "busy"
    # Not fresh any more (fresh_seconds 0): asked again.
    _, asked = freebusy.schedule_items(scope, connection, calendars[1], window)
    assert asked == 1
