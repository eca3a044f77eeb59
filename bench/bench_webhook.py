"""The Graph webhook under load, and what renewing 1,000 subscriptions costs in Graph requests.

Starts the whole local stack (Azurite, the Microsoft 365 emulator, the Functions host running the
unmodified app), then:

1. seeds a tenant with 1,000 room mailboxes, connects a building to it (application mode, through
   our connect routes) and creates one real Graph subscription per room (the emulator validates
   each against our webhook), storing the subscription records and index entities exactly as
   `ensure_subscription` does;
2. POSTs change notifications (one item each, a valid clientState of one of those subscriptions)
   to the host's `/api/graph/notifications` at a fixed rate (default 200/s for 30 s, open loop,
   bounded concurrency) and prints the acknowledgement latency p50 / p99 and the non-2xx count;
3. runs the renewal timer once through the host's admin API and prints the Graph requests it made
   (the emulator's counters before and after: HTTP requests, `$batch` requests, inner PATCHes).

Usage: python bench/bench_webhook.py [--rate 200] [--seconds 30] [--subscriptions 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import print_host_floor
from devstack.stack import DEMO_SCENARIO, Stack, start_stack


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def app_env(stack: Stack) -> Iterator[None]:
    """shared/ in this process pointed at the stack (to write records as the app does)."""
    with stack.app_environment():
        yield


def seed_rooms(stack: Stack, count: int) -> dict[str, Any]:
    """A fresh copy of the demo tenant with `count` extra room mailboxes."""
    scenario = json.loads(Path(DEMO_SCENARIO).read_text())
    tenant = scenario["tenants"][0]
    tenant.pop("id", None)
    tenant["users"] += [
        {"mailNickname": f"benchroom{i:04d}", "displayName": f"Bench room {i}", "type": "room",
         "room": {"capacity": 6}}
        for i in range(count)
    ]  # fmt: skip
    text = json.dumps({"tenants": [tenant]})
    for key, app in stack.emulator.seed["apps"].items():
        text = text.replace(f'"app": "{key}"', f'"app": "{app["clientId"]}"')
        text = text.replace(f'"resource": "{key}"', f'"resource": "{app["clientId"]}"')
    return dict(stack.emulator.seed_scenario(json.loads(text), fresh=True)["tenant"])


def connect(stack: Stack, tenant: dict[str, Any], building: str) -> None:
    from tests.e2e.conftest import client_token, functions_client
    from tests.e2e.connect_fixtures import connect_application

    endpoints = stack.endpoints
    with (
        functions_client(endpoints, client_token(endpoints)) as api,
        functions_client(endpoints) as anonymous,
        httpx.Client(verify=endpoints["caBundle"], trust_env=False, timeout=30) as browser,
    ):
        _, done = connect_application(
            api, anonymous, browser, endpoints, building, tenant["id"],
            login_hint=tenant["users"]["admin"]["userPrincipalName"],
        )  # fmt: skip
    assert "status=connected" in done, done


def create_subscriptions(stack: Stack, tenant: dict[str, Any], building: str) -> list[Any]:
    """One real subscription per bench room, made as ensure_subscription makes it; returns the
    records (with their clientStates alongside)."""
    from shared import wiring
    from shared.core.times import utc_z
    from shared.storage import clients, tablestore
    from shared.subscriptions import manage, store
    from shared.subscriptions.clientstate import client_state

    connection = wiring.connection_repository().get(building)
    assert connection is not None and connection.status == "connected"
    key = wiring.client_state_keys().current()
    token = stack.emulator.control.post(
        "graph/token",
        json={"tenantId": tenant["id"], "clientId": stack.endpoints["app"]["clientId"],
              "roles": ["Calendars.Read"], "lifetime": 7200},
    ).json()["access_token"]  # fmt: skip
    rooms = sorted(
        (u["mail"].lower() for n, u in tenant["users"].items() if n.startswith("benchroom")),
    )
    base = stack.settings["BB_PUBLIC_BASE_URL"]
    now = datetime.now(UTC)
    # Due for renewal under the default settings (renewed once less than 24 h are left).
    expiry = manage.expiry_for(now, 20 * 60)
    http = httpx.Client(
        verify=stack.endpoints["caBundle"], trust_env=False, timeout=60,
        headers={"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'},
        limits=httpx.Limits(max_connections=16),
    )  # fmt: skip

    def one(mailbox: str) -> tuple[Any, str]:
        nonce = secrets.token_urlsafe(24)
        state = client_state(key.key, nonce)
        response = http.post(
            f"{stack.endpoints['graphBaseUrl']}/subscriptions",
            json={
                "changeType": manage.CHANGE_TYPES,
                "notificationUrl": f"{base}/graph/notifications",
                "lifecycleNotificationUrl": f"{base}/graph/lifecycle",
                "resource": f"/users/{mailbox}/events",
                "expirationDateTime": utc_z(expiry),
                "clientState": state,
                "latestSupportedTlsVersion": "v1_2",
            },
        )
        assert response.status_code == 201, response.text
        record = store.Record(
            response.json()["id"], building, mailbox, connection.connection_id,
            tenant["id"].lower(), nonce, key.check,
        )  # fmt: skip
        store.put_record(clients.table, record, now)
        return record, state

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(one, rooms))
    index = [
        ("upsert", {"PartitionKey": store.index_partition(building),
                    "RowKey": tablestore.escape_key(r.mailbox),
                    **store.active_index(r, expiry, now)})
        for r, _ in made
    ]  # fmt: skip
    tablestore.submit_in_chunks(clients.table(store.TABLE), index)
    http.close()
    return made


class StorageProbe(threading.Thread):
    """Sends a tiny queue message to Azurite every 100 ms from this process and records how long
    each took: a stall of the local storage emulator shows here too, not only in the webhook."""

    def __init__(self, connection_string: str) -> None:
        super().__init__(daemon=True)
        from azure.storage.queue import QueueClient

        self.queue = QueueClient.from_connection_string(connection_string, "bench-probe")
        with contextlib.suppress(Exception):
            self.queue.create_queue()
        self.took: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            with contextlib.suppress(Exception):
                self.queue.send_message("x", time_to_live=60)
            self.took.append(time.perf_counter() - started)
            self.stop.wait(0.1)


def load(stack: Stack, made: list[Any], tenant_id: str, rate: float, seconds: float) -> None:
    """Open-loop load: request i is sent at start + i / rate, whatever the earlier ones do."""
    url = f"{stack.settings['BB_PUBLIC_BASE_URL']}/graph/notifications"
    # Idle connections are dropped well before the server's keep-alive timeout (5 s), so a
    # request never races the server closing its connection (a client artefact, not an answer).
    client = httpx.Client(
        trust_env=False,
        timeout=10,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=1.0),
    )
    bodies = [
        json.dumps({"value": [{
            "id": "lsgTZMr9KwAAA", "subscriptionId": record.subscription_id,
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z", "clientState": state,
            "changeType": "updated", "tenantId": tenant_id,
            "resource": f"Users/{record.mailbox}/Events/AAMk{i}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": f"AAMk{i}"},
        }]}).encode()
        for i, (record, state) in enumerate(made)
    ]  # fmt: skip
    total = int(rate * seconds)
    results: list[tuple[float, float, int]] = []  # (latency, lateness, status)
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def send(n: int, due: float) -> None:
        started = time.perf_counter()
        try:
            status = client.post(
                url, content=bodies[n % len(bodies)], headers={"Content-Type": "application/json"}
            ).status_code
        except httpx.HTTPError as exc:
            status = 0
            with lock:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        done = time.perf_counter()
        with lock:
            results.append((done - started, done - due, status))

    # Warm-up (cold imports, Key Vault key, record cache) is not what is measured.
    for n in range(min(len(bodies), 50)):
        send(n, time.perf_counter())
    results.clear()
    log = Path(stack.state_dir) / "logs" / "functions.log"
    mark = log.stat().st_size
    probe = StorageProbe(stack.settings["AzureWebJobsStorage"])
    probe.start()
    with ThreadPoolExecutor(48) as pool:
        t0 = time.perf_counter() + 0.2
        for n in range(total):
            due = t0 + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pool.submit(send, n, due)
    probe.stop.set()
    probe.join()
    latencies = [r[0] * 1000 for r in results]
    since_due = [r[1] * 1000 for r in results]
    bad = sum(1 for r in results if not 200 <= r[2] < 300)
    print(f"webhook: {len(results)} notifications at {rate:g}/s for {seconds:g} s "
          f"(sent over {total / rate:.1f} s)")  # fmt: skip
    print(f"  acknowledgement latency: p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, "
          f"mean {statistics.fmean(latencies):.1f} ms")  # fmt: skip
    print(f"  from scheduled send:     p50 {percentile(since_due, 0.5):.1f} ms, "
          f"p99 {percentile(since_due, 0.99):.1f} ms")  # fmt: skip
    print(f"  non-2xx answers: {bad}" + (f" (client errors: {errors})" if errors else ""))
    with log.open("rb") as f:
        f.seek(mark)
        served = [
            float(m.group(1))
            for m in re.finditer(
                rb"Executed 'Functions\.graph_notifications' \(Succeeded.*?duration=(\d+)ms",
                f.read(),
            )
        ]
    stalls = [t for t in probe.took if t > 1.0]
    print(
        f"  storage probe (one queue message every 100 ms, this process → Azurite): "
        f"p50 {percentile(probe.took, 0.5) * 1000:.0f} ms, {len(stalls)} over 1 s"
        + (f" (longest {max(stalls):.1f} s)" if stalls else "")
    )
    if served:
        print(
            f"  in the host (invocation durations from its log): "
            f"p50 {percentile(served, 0.5):.0f} ms, p99 {percentile(served, 0.99):.0f} ms "
            f"over {len(served)} invocations"
        )
    client.close()


def renewal(stack: Stack, count: int) -> None:
    before = stack.emulator.control.get("stats").json()["requests"]
    log = Path(stack.state_dir) / "logs" / "functions.log"
    mark = log.stat().st_size
    started = time.perf_counter()
    response = httpx.post(
        f"{stack.functions_url.removesuffix('/api')}/admin/functions/subscriptions_renew",
        json={"input": ""}, headers={"x-functions-key": stack.host.master_key}, trust_env=False,
    )  # fmt: skip
    assert response.status_code == 202, response.text
    line = ""
    while time.perf_counter() - started < 300 and not line:
        with log.open("rb") as f:
            f.seek(mark)
            line = next(
                (x for x in f.read().decode().splitlines() if "subscription renewal:" in x), ""
            )
        time.sleep(0.05)
    took = time.perf_counter() - started
    after = stack.emulator.control.get("stats").json()["requests"]
    ep_before, ep_after = before["byEndpoint"], after["byEndpoint"]

    def delta(name: str) -> int:
        return int(ep_after.get(name, 0)) - int(ep_before.get(name, 0))

    batches = delta("POST /$batch")
    patches = delta("PATCH /subscriptions/{id}")
    print(f"renewal of {count} subscriptions: {took:.1f} s; {line.split('renewal: ')[-1]}")
    print(f"  Graph HTTP requests: {batches} ($batch) — {batches / max(count, 1) * 1000:.0f} per 1,000 "
          f"subscriptions; inner PATCH /subscriptions/{{id}}: {patches}; "
          f"emulator counter total +{after['total'] - before['total']} (counts inner requests too)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--state-dir", help="keep the stack's files (logs) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        # The renewal timer runs only when this bench runs it (its schedule would otherwise fire
        # at :00 / :30 in the middle of the load, measuring both at once).
        stack = start_stack(
            Path(args.state_dir or tmp), extra_settings={"BB_RENEW_SCHEDULE": "0 0 0 1 1 *"}
        )
        try:
            print_host_floor(stack)
            with app_env(stack):
                t = time.perf_counter()
                tenant = seed_rooms(stack, args.subscriptions)
                building = f"bench-{uuid.uuid4().hex[:8]}"
                connect(stack, tenant, building)
                made = create_subscriptions(stack, tenant, building)
                print(f"set-up: {len(made)} rooms, connection and subscriptions in "
                      f"{time.perf_counter() - t:.1f} s")  # fmt: skip
                load(stack, made, tenant["id"], args.rate, args.seconds)
                renewal(stack, len(made))
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
