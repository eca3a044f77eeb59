"""Graph's throttling in the emulator (devstack/m365/graph/throttling.py), over real HTTPS: the
global per-app limit (every request and every `$batch` item counts, other apps unaffected), the
per-mailbox 10-minute window on the emulator clock, and our GraphClient riding out per-mailbox
concurrency 429s from two "instances" at once with no error surfacing (issue 17).
"""

from __future__ import annotations

import ssl
import threading
import uuid

import httpx

from shared.core.connection import Connection
from shared.graph.client import GraphClient
from tests.integration.graph_fixtures import Tenant, graph_emu, tenant
from tests.integration.service_fixtures import ROLES, AppTokens

__all__ = ["graph_emu", "tenant"]  # fixtures used by name below


def code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def test_the_global_per_app_limit_counts_every_request_and_batch_item(tenant: Tenant) -> None:
    tenant.emu.control.post(
        "graph/faults", json={"throttle": {"perApp": 4, "perAppSeconds": 600, "reset": True}}
    )
    app = tenant.as_app(["Calendars.Read", "Place.Read.All"])
    # Two mailboxes and a request that reaches none: the limit is the app's, not a mailbox's.
    for url in (
        f"/users/{tenant.upn('room1')}/calendar",
        f"/users/{tenant.upn('room2')}/calendar",
        "/places/microsoft.graph.room",
    ):
        assert app.get(url).status_code == 200
    items = [{"id": str(n), "method": "GET", "url": f"/users/{tenant.upn('alice')}/calendar"}
             for n in range(3)]  # fmt: skip
    answers = app.post("/$batch", json={"requests": items}).json()["responses"]
    statuses = sorted(a["status"] for a in answers)
    assert statuses == [200, 429, 429], answers  # the 4th request of the app passes, then no more
    throttled = next(a for a in answers if a["status"] == 429)
    assert throttled["body"]["error"]["code"] == "TooManyRequests"
    assert int(throttled["headers"]["Retry-After"]) >= 1
    over = app.get(f"/users/{tenant.upn('room1')}/calendar")
    assert over.status_code == 429 and code(over) == "TooManyRequests"
    assert 590 <= int(over.headers["Retry-After"]) <= 600
    # Another app of the tenant has its own budget.
    other = tenant.client(tenant.token(None, app="scoped", roles=["Calendars.Read"]))
    assert other.get(f"/users/{tenant.upn('room1')}/calendar").status_code == 200
    # DELETE graph/faults restores Microsoft's figures.
    tenant.emu.control.delete("graph/faults")
    assert app.get(f"/users/{tenant.upn('room1')}/calendar").status_code == 200


def test_the_mailbox_window_refills_on_the_emulator_clock(tenant: Tenant) -> None:
    tenant.emu.control.post("graph/faults", json={"throttle": {"perTenMinutes": 2, "reset": True}})
    app = tenant.as_app(["Calendars.Read"])
    room1 = f"/users/{tenant.upn('room1')}/calendar"
    assert [app.get(room1).status_code for _ in range(2)] == [200, 200]
    refused = app.get(room1)
    assert refused.status_code == 429 and code(refused) == "ApplicationThrottled"
    assert "MailboxRequests" in refused.json()["error"]["message"]
    assert 590 <= int(refused.headers["Retry-After"]) <= 600
    assert app.get(f"/users/{tenant.upn('room2')}/calendar").status_code == 200  # its own window
    tenant.emu.control.post("clock/advance", json={"seconds": 601})
    assert app.get(room1).status_code == 200


def test_graph_client_rides_out_mailbox_concurrency_from_two_instances(tenant: Tenant) -> None:
    """Each client keeps to 4 requests per mailbox itself; two of them (two Functions instances)
    make 8, so the emulator refuses some with 429 + Retry-After, and the client retries them."""
    tenant.emu.control.post(
        "graph/faults",
        json={"method": "GET", "path": "/users/*/calendar/events", "latencyMs": 150},
    )
    tenant.emu.control.post("graph/faults", json={"throttle": {"reset": True}})
    before = tenant.emu.control.get("graph/stats").json()["throttled"]
    connection = Connection(
        f"b-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), "application", "connected", tenant.id,
        scopes=frozenset(ROLES),
    )  # fmt: skip
    http = [
        httpx.Client(
            verify=ssl.create_default_context(cafile=tenant.emu.ca_bundle),
            trust_env=False,
            timeout=30,
        )
        for _ in range(2)
    ]
    clients = [GraphClient(h, tenant.emu.graph_url, AppTokens(tenant), None) for h in http]
    url = f"/users/{tenant.upn('room2')}/calendar/events"
    failures: list[BaseException] = []
    done: list[int] = []
    lock = threading.Lock()

    def call(client: GraphClient) -> None:
        try:
            body = client.get_json(connection, url, operation="events.list")
            with lock:
                done.append(len(body["value"]))
        except BaseException as exc:  # any failure is what this test looks for
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=call, args=(clients[n % 2],)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in http:
        h.close()
    assert failures == [] and len(done) == 16
    assert tenant.emu.control.get("graph/stats").json()["throttled"] > before
