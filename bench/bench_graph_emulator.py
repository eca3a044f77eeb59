"""Sustained request rate of the Graph emulator on this machine.

Starts the emulator, seeds a fresh tenant, then for ~10 s per operation runs N client threads
(each its own mailbox, so Outlook's per-mailbox concurrency limit of 4 is never the bottleneck):
`GET /users/{id}/calendarView` over a week with a few events, and `POST /users/{id}/events`.
Prints requests/s. Usage: python bench/bench_graph_emulator.py [--threads N] [--seconds S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.m365 import start_emulator

SCENARIO = {
    "apps": [{"key": "bench", "displayName": "Bench"}],
    "tenants": [
        {
            "key": "b",
            "domain": "bench.example",
            "users": [{"mailNickname": f"user{i}"} for i in range(16)],
        }
    ],
}


def run(op: str, clients: list[httpx.Client], paths: list[str], seconds: float) -> float:
    start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    counts = [0] * len(clients)
    errors = [0] * len(clients)
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        client, path = clients[i], paths[i]
        n = 0
        while time.monotonic() < stop_at:
            if op == "view":
                r = client.get(
                    f"{path}/calendarView",
                    params={
                        "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "endDateTime": (start + dt.timedelta(days=7)).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                    },
                )
            else:
                s = start + dt.timedelta(days=1, minutes=n % 600)
                r = client.post(
                    f"{path}/events",
                    json={
                        "subject": f"bench {n}",
                        "start": {"dateTime": s.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                        "end": {
                            "dateTime": (s + dt.timedelta(minutes=30)).strftime(
                                "%Y-%m-%dT%H:%M:%S"
                            ),
                            "timeZone": "UTC",
                        },
                    },
                )
            n += 1
            if r.status_code >= 400:
                errors[i] += 1
            counts[i] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    if sum(errors):
        print(f"  ({sum(errors)} error responses)")
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        emu = start_emulator(Path(tmp) / "tls", log_path=Path(tmp) / "m365.log")
        try:
            seed = emu.seed_scenario(SCENARIO, fresh=True)
            tenant = seed["tenants"]["b"]
            token = emu.control.post(
                "graph/token",
                json={
                    "tenantId": tenant["id"],
                    "clientId": seed["apps"]["bench"]["clientId"],
                    "roles": ["Calendars.ReadWrite"],
                    "lifetime": 7200,
                },
            ).json()["access_token"]
            context = ssl.create_default_context(cafile=emu.ca_bundle)
            clients = [
                httpx.Client(
                    base_url=emu.graph_url,
                    verify=context,
                    trust_env=False,
                    timeout=30.0,
                    headers={"Authorization": f"Bearer {token}"},
                )
                for _ in range(args.threads)
            ]
            paths = [
                f"/users/{tenant['users'][f'user{i % 16}']['id']}" for i in range(args.threads)
            ]
            for client, path in zip(clients, paths, strict=True):  # a few events to view
                for h in range(5):
                    s = dt.datetime.now(dt.UTC).replace(minute=0, second=0) + dt.timedelta(hours=h)
                    client.post(
                        f"{path}/events",
                        json={
                            "subject": "seed",
                            "start": {
                                "dateTime": s.strftime("%Y-%m-%dT%H:%M:%S"),
                                "timeZone": "UTC",
                            },
                            "end": {
                                "dateTime": (s + dt.timedelta(minutes=30)).strftime(
                                    "%Y-%m-%dT%H:%M:%S"
                                ),
                                "timeZone": "UTC",
                            },
                        },
                    )
            view = run("view", clients, paths, args.seconds)
            print(
                f"GET calendarView: {view:.0f} requests/s ({args.threads} threads, "
                f"{args.seconds:.0f} s)"
            )
            post = run("post", clients, paths, args.seconds)
            print(
                f"POST events:      {post:.0f} requests/s ({args.threads} threads, "
                f"{args.seconds:.0f} s)"
            )
            for c in clients:
                c.close()
        finally:
            emu.stop()


if __name__ == "__main__":
    main()
