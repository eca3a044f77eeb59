"""The local Functions host's floor, printed by every bench that goes through the host (issue 17):
the same authenticated GET of one small entity, so a route's figure can be read against what the
host, token validation and one storage read cost on this machine in the same run."""

from __future__ import annotations

import statistics
import time

from devstack.stack import Stack

REQUESTS = 100
TARGET_MS = 15.0  # issue 17: a trivial authenticated GET (read as its p50: the machine is shared)


def print_host_floor(stack: Stack, requests: int = REQUESTS) -> None:
    """`GET /api/buildings/{demo building}` (a Portal.Service token, one cached existence check,
    one point read): p50 and p95 over `requests` sequential calls after one warm-up."""
    from tests.e2e.conftest import client_token, functions_client

    path = f"buildings/{stack.endpoints['buildingId']}"
    with functions_client(stack.endpoints, client_token(stack.endpoints)) as api:
        assert api.get(path).status_code == 200
        ms = []
        for _ in range(requests):
            started = time.perf_counter()
            response = api.get(path)
            ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    p95 = statistics.quantiles(ms, n=20)[-1]
    p50 = statistics.median(ms)
    verdict = "met" if p50 <= TARGET_MS else "NOT met"
    print(
        f"{'host floor: GET one building (auth, one read)':<46} p50 "
        f"{p50:7.1f} ms   p95 {p95:7.1f} ms   (n={requests})   target <= {TARGET_MS:g} ms: {verdict}",
        flush=True,
    )
