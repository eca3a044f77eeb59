"""The Graph webhook under load, and what renewing 1,000 subscriptions costs in Graph requests.

Starts the whole local stack (Azurite, the Microsoft 365 emulator, the Functions host running the
unmodified app) plus a second host on the same app and storage for the queue and timer functions
(Flex Consumption scales HTTP functions apart from the others; `start_worker_host`), then:

1. seeds a tenant with 1,000 room mailboxes, connects a building to it (application mode, through
   our connect routes) and creates one real Graph subscription per room (the emulator validates
   each against our webhook), storing the subscription records and index entities exactly as
   `ensure_subscription` does;
2. POSTs change notifications (one item each, a valid clientState of one of those subscriptions)
   to the host's `/api/graph/notifications` at a fixed rate (default 200/s for 30 s, open loop
   from one asyncio sender) and prints the acknowledgement latency p50 / p99, the sender's
   lateness against its schedule and the non-2xx count, each beside its target (issue 17);
3. a step search: the same load for `--step-seconds` at each of `--step-rates` in turn, up to the
   first rate not sustained (ack p99 under 1 s, every answer 2xx, the sender on schedule), and
   prints the highest sustained;
4. runs the renewal timer once through the worker host's admin API and prints the Graph requests
   it made (the emulator's counters before and after: HTTP requests, `$batch` requests, inner
   PATCHes); it runs before the load (2 and 3), while the worker's queue is empty.

Usage: python bench/bench_webhook.py [--rate 200] [--seconds 30] [--subscriptions 1000]
           [--step-rates 50,100,...] [--step-seconds 10] [--no-worker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import print_host_floor
from devstack.host import HostProcess, start_host_process
from devstack.procs import REPO_ROOT
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
                    **store.active_index(r, expiry, now, f"{base}/graph/notifications")})
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


@dataclass
class Round:
    """One open-loop round at a fixed rate: per request (ack latency, lateness, status)."""

    rate: float
    seconds: float
    results: list[tuple[float, float, int]]
    errors: Counter[str]
    served: list[float]  # the host's own invocation durations (ms), from its log

    def ms(self, index: int) -> list[float]:
        return [r[index] * 1000 for r in self.results]

    @property
    def bad(self) -> int:
        return sum(1 for r in self.results if not 200 <= r[2] < 300)

    def p99(self, index: int) -> float:
        return percentile(self.ms(index), 0.99)


def notification_bodies(made: list[Any], tenant_id: str) -> list[bytes]:
    return [
        json.dumps({"value": [{
            "id": "lsgTZMr9KwAAA", "subscriptionId": record.subscription_id,
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z", "clientState": state,
            "changeType": "updated", "tenantId": tenant_id,
            "resource": f"Users/{record.mailbox}/Events/AAMk{i}",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": f"AAMk{i}"},
        }]}).encode()
        for i, (record, state) in enumerate(made)
    ]  # fmt: skip


class _Http1Pool:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, just for this sender.

    Why not httpx.AsyncClient: on this 2-core machine its connection pool took a millisecond
    and more of CPU per request, and with hundreds of requests in flight it stalled outright
    (one run froze after 1,400 requests with the sender at 50 % CPU and the host idle): the
    sender became the bottleneck it is meant to rule out. This one writes a request and reads
    the status line, the headers and a Content-Length body; nothing else is needed here.
    """

    IDLE = 1.0  # s: idle connections are closed well before uvicorn's keep-alive timeout (5 s)

    def __init__(self, url: str, connections: int = 256) -> None:
        # At most this many requests in flight (Graph too opens a bounded number of
        # connections); one beyond waits for a free connection, which counts as lateness.
        self.slots = asyncio.Semaphore(connections)
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.head = (
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.perf_counter()
        while self.idle:
            since, reader, writer = self.idle.pop()
            if now - since < self.IDLE:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes) -> int:
        async with self.slots:
            return await self._post(body)

    async def _post(self, body: bytes) -> int:
        reader, writer = await self._connection()
        try:
            writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            status = int((await reader.readline()).split(b" ", 2)[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"connection":
                    close = value.strip().lower() == b"close"
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self.idle.append((time.perf_counter(), reader, writer))
        return status

    def close(self) -> None:
        for _, _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _open_loop(url: str, bodies: list[bytes], rate: float, seconds: float) -> Round:
    """Request i is sent at start + i / rate, whatever the earlier ones do (open loop).

    One asyncio loop sends them all, each request a task of its own on a connection of its own
    (reused once free), so a slow answer never delays a later send: the sender's lateness
    (done - due, beside the ack latency done - sent) says whether it kept its schedule. The
    first version, a pool of 48 threads with blocking clients, could not: at 300 ms an answer
    that is 160/s, and the schedule slipped by seconds, measuring the client as much as the
    webhook.
    """
    pool = _Http1Pool(url)
    results: list[tuple[float, float, int]] = []
    errors: Counter[str] = Counter()

    async def send(n: int, due: float) -> None:
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(pool.post(bodies[n % len(bodies)]), 10)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            status = 0
            errors[type(exc).__name__] += 1
        done = time.perf_counter()
        results.append((done - started, done - due, status))

    # Warm-up, not measured: cold imports, the Key Vault key, connections, and every
    # subscription's record in the host's cache (a warm instance has them; a cold one pays one
    # table point read per subscription's first notification).
    for first in range(0, len(bodies), 64):
        batch = range(first, min(len(bodies), first + 64))
        await asyncio.gather(*(send(n, time.perf_counter()) for n in batch))
    results.clear()
    errors.clear()
    tasks: list[asyncio.Task[None]] = []
    total = int(rate * seconds)
    t0 = time.perf_counter() + 0.1
    n = 0
    while n < total:
        now = time.perf_counter()
        # Everything due by now goes out at once: a sleep that overslept costs no sends.
        while n < total and t0 + n / rate <= now:
            tasks.append(asyncio.create_task(send(n, t0 + n / rate)))
            n += 1
        if n < total:
            await asyncio.sleep(max(0.0, t0 + n / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    pool.close()
    return Round(rate, seconds, results, errors, [])


def served_durations(log: Path, mark: int) -> list[float]:
    """The host's 'Executed' durations of the notification webhook logged after `mark`."""
    with log.open("rb") as f:
        f.seek(mark)
        return [
            float(m.group(1))
            for m in re.finditer(
                rb"Executed 'Functions\.graph_notifications' \(Succeeded.*?duration=(\d+)ms",
                f.read(),
            )
        ]


def load_round(stack: Stack, bodies: list[bytes], rate: float, seconds: float) -> Round:
    url = f"{stack.settings['BB_PUBLIC_BASE_URL']}/graph/notifications"
    log = Path(stack.state_dir) / "logs" / "functions.log"
    mark = log.stat().st_size
    result = asyncio.run(_open_loop(url, bodies, rate, seconds))
    result.served = served_durations(log, mark)
    settle(log)
    return result


def settle(log: Path, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Wait until the webhook's host has logged nothing for `quiet` seconds (at most `limit`):
    requests the sender gave up on (10 s) still run there, and would weigh on the next round."""
    deadline = time.perf_counter() + limit
    size = log.stat().st_size
    while time.perf_counter() < deadline:
        time.sleep(quiet)
        now = log.stat().st_size
        if now == size:
            return
        size = now


def sustained(result: Round) -> bool:
    """Whether a rate was sustained: ack p99 under 1 s, every answer 2xx, the sender on
    schedule (lateness p99 under 1 s)."""
    return result.bad == 0 and result.p99(0) < 1000 and result.p99(1) < 1000


def target(figure: float, limit: float, unit: str = "ms") -> str:
    return f"(target <= {limit:g} {unit}: {'met' if figure <= limit else 'NOT met'})"


def worker_messages(log: Path, mark: int) -> int:
    """The sync queue messages the worker host served after `mark` (its 'Executed' lines)."""
    with log.open("rb") as f:
        f.seek(mark)
        return f.read().count(b"Executed 'Functions.sync_worker' (")


def load(stack: Stack, made: list[Any], tenant_id: str, rate: float, seconds: float) -> None:
    bodies = notification_bodies(made, tenant_id)
    probe = StorageProbe(stack.settings["AzureWebJobsStorage"])
    probe.start()
    worker_log = Path(stack.state_dir) / "logs" / WORKER_LOG
    worker_mark = worker_log.stat().st_size if worker_log.exists() else None
    result = load_round(stack, bodies, rate, seconds)
    probe.stop.set()
    probe.join()
    latencies, since_due = result.ms(0), result.ms(1)
    ack_p99, late_p99 = result.p99(0), result.p99(1)
    print(f"webhook: {len(result.results)} notifications at {rate:g}/s for {seconds:g} s")
    print(f"  acknowledgement latency: p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {ack_p99:.1f} ms {target(ack_p99, 100)}, max {max(latencies):.1f} ms, "
          f"mean {statistics.fmean(latencies):.1f} ms")  # fmt: skip
    print(f"  sender lateness (done - scheduled send): p50 {percentile(since_due, 0.5):.1f} ms, "
          f"p99 {late_p99:.1f} ms {target(late_p99, 1000)}")  # fmt: skip
    errors = f" (client errors: {dict(result.errors)})" if result.errors else ""
    print(f"  non-2xx answers: {result.bad} {target(result.bad, 0, 'answers')}{errors}")
    stalls = [t for t in probe.took if t > 1.0]
    print(
        f"  storage probe (one queue message every 100 ms, this process → Azurite): "
        f"p50 {percentile(probe.took, 0.5) * 1000:.0f} ms, {len(stalls)} over 1 s"
        + (f" (longest {max(stalls):.1f} s)" if stalls else "")
    )
    if result.served:
        print(
            f"  in the host (invocation durations from its log): "
            f"p50 {percentile(result.served, 0.5):.0f} ms, "
            f"p99 {percentile(result.served, 0.99):.0f} ms over {len(result.served)} invocations"
        )
    if worker_mark is not None:
        settle(worker_log)
        messages = worker_messages(worker_log, worker_mark)
        print(f"  sync queue messages the worker served: {messages} for {len(result.served)} "
              f"notifications (the warm-up's included; concurrent POSTs' requests share one: "
              f"GroupSend)")  # fmt: skip


def step_search(
    stack: Stack, made: list[Any], tenant_id: str, rates: list[float], seconds: float
) -> None:
    """The highest rate sustained (see `sustained`), rates tried in increasing order until one
    fails."""
    bodies = notification_bodies(made, tenant_id)
    best = 0.0
    for rate in rates:
        result = load_round(stack, bodies, rate, seconds)
        ok = sustained(result)
        print(f"  step {rate:6g}/s for {seconds:g} s: ack p50 "
              f"{percentile(result.ms(0), 0.5):7.1f} ms, p99 {result.p99(0):7.1f} ms; lateness "
              f"p99 {result.p99(1):7.1f} ms; non-2xx {result.bad}: "
              f"{'sustained' if ok else 'not sustained'}", flush=True)  # fmt: skip
        if not ok:
            break
        best = rate
    print(f"webhook: highest sustained rate (ack p99 < 1 s, 0 non-2xx, sender on schedule): "
          f"{best:g}/s" + (" (the highest rate tried)" if best == rates[-1] else ""))  # fmt: skip


def renewal(stack: Stack, worker: HostProcess, count: int) -> None:
    """The renewal timer, run once on the worker host (timers live there)."""
    before = stack.emulator.control.get("stats").json()["requests"]
    log = Path(stack.state_dir) / "logs" / WORKER_LOG
    mark = log.stat().st_size
    started = time.perf_counter()
    response = httpx.post(
        f"{worker.base_url.removesuffix('/api')}/admin/functions/subscriptions_renew",
        json={"input": ""}, headers={"x-functions-key": worker.master_key}, trust_env=False,
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


WORKER_LOG = "functions-worker.log"


def function_names() -> tuple[list[str], list[str]]:
    """The app's HTTP-triggered functions and its others (queue and timer triggers)."""
    from function_app import app

    http: list[str] = []
    other: list[str] = []
    for fn in app.get_functions():
        trigger = fn.get_trigger()
        is_http = trigger is not None and trigger.get_binding_name() == "httpTrigger"
        (http if is_http else other).append(str(fn.get_function_name()))
    return http, other


def disabling(names: list[str]) -> dict[str, str]:
    return {f"AzureWebJobs.{name}.Disabled": "true" for name in names}


def start_worker_host(stack: Stack, http: list[str], other: list[str]) -> HostProcess:
    """A second host on the same app and storage running only the queue and timer functions.

    Flex Consumption scales per function: the HTTP functions together on instances of their
    own, every other function on its own instances. So in Azure the webhook's instance never
    runs the sync rounds its notifications cause; one local host running both put 200 sync
    rounds a second on the webhook's GIL and thread pools. Both hosts still share this
    machine's two cores, as they would not in Azure.
    """
    settings = {k: v for k, v in stack.settings.items() if k not in disabling(other)}
    return start_host_process(
        "function_app:app",
        app_dir=REPO_ROOT,
        settings=settings | disabling(http),
        keys_file=Path(stack.state_dir) / "worker-host-keys.json",
        workdir=Path(stack.state_dir) / "worker-host",
        log_path=Path(stack.state_dir) / "logs" / WORKER_LOG,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument(
        "--step-rates",
        default="50,100,150,200,300,400,600,800",
        help="rates (per second, increasing) of the step search; empty: none",
    )
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument(
        "--no-worker", action="store_true",
        help="run no queue or timer function at all (the webhook's host alone; notifications "
             "pile up on the queue, and the renewal is skipped)",
    )  # fmt: skip
    parser.add_argument("--state-dir", help="keep the stack's files (logs) here")
    args = parser.parse_args()
    # SIGTERM stops the stack as Ctrl-C does (the finally below), leaving no processes behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        # The renewal timer runs only when this bench runs it (its schedule would otherwise fire
        # at :00 / :30 in the middle of the load, measuring both at once).
        http, other = function_names()
        stack = start_stack(
            Path(args.state_dir or tmp),
            extra_settings={"BB_RENEW_SCHEDULE": "0 0 0 1 1 *"} | disabling(other),
        )
        worker = None
        try:
            if not args.no_worker:
                worker = start_worker_host(stack, http, other)
            print_host_floor(stack)
            with app_env(stack):
                t = time.perf_counter()
                tenant = seed_rooms(stack, args.subscriptions)
                building = f"bench-{uuid.uuid4().hex[:8]}"
                connect(stack, tenant, building)
                made = create_subscriptions(stack, tenant, building)
                print(f"set-up: {len(made)} rooms, connection and subscriptions in "
                      f"{time.perf_counter() - t:.1f} s")  # fmt: skip
                if worker is not None:
                    # First, on a quiet worker: after the load its queue holds the backlog of
                    # sync rounds, and the timer would wait behind them (a count, not a time).
                    renewal(stack, worker, len(made))
                load(stack, made, tenant["id"], args.rate, args.seconds)
                rates = [float(r) for r in args.step_rates.split(",") if r.strip()]
                if rates:
                    step_search(stack, made, tenant["id"], rates, args.step_seconds)
        finally:
            if worker is not None:
                worker.stop()
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
