"""What the bounded JSON reader (shared/core/jsonbody.py) costs over a bare `json.loads`.

Every request body, webhook collection and continuation token is checked for size and nesting
depth before it is parsed. This prints, for bodies we really receive (a booking, a Graph change
notification collection, a 20,000-row user import) and for the attack body (1,000 levels),
the median time of `json.loads` and of `parse_json` and their ratio, all in one run (these
machines are shared and noisy: compare the ratios, not the absolute numbers).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.core.errors import ValidationFailed
from shared.core.jsonbody import IMPORT_MAX_BYTES, parse_json

BOOKING = json.dumps({
    "resourceId": "boardroom-4a", "start": "2026-12-05T09:00:00+01:00",
    "end": "2026-12-05T10:00:00+01:00", "title": "Planning",
    "booker": {"email": "ann@contoso.com", "name": "Ann"},
}).encode()  # fmt: skip
NOTIFICATION = {
    "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "clientState": "x" * 43,
    "changeType": "updated", "resource": "Users/u/Events/AAMk", "tenantId": "t",
    "subscriptionExpirationDateTime": "2026-12-05T18:23:45.9356913Z",
    "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": "Users/u/Events/AAMk",
                     "@odata.etag": 'W/"DwAAABYAAAA"', "id": "AAMk"},
}  # fmt: skip
COLLECTION = json.dumps({"value": [NOTIFICATION] * 100}).encode()
IMPORT = json.dumps(
    [{"email": f"user{i}@contoso.com", "name": f"User {i}", "companyId": "contoso"}
     for i in range(20_000)]
).encode()  # fmt: skip
NESTED = b"[" * 1000 + b"]" * 1000


def median_s(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def refused(body: bytes) -> Callable[[], object]:
    def call() -> object:
        try:
            return parse_json(body)
        except ValidationFailed:
            return None

    return call


def main() -> None:
    print(f"{'body':<34}{'bytes':>10}{'json.loads':>14}{'parse_json':>14}{'ratio':>8}")
    for name, body, runs, limit in (
        ("booking", BOOKING, 2000, None),
        ("100 change notifications", COLLECTION, 200, None),
        ("users:import, 20,000 rows", IMPORT, 10, IMPORT_MAX_BYTES),
    ):
        bare = median_s(lambda b=body: json.loads(b), runs)  # type: ignore[misc]
        bounded = median_s(
            lambda b=body, m=limit: parse_json(b, max_bytes=m or len(b)),  # type: ignore[misc]
            runs,
        )
        print(f"{name:<34}{len(body):>10}{bare * 1e6:>12.1f}us{bounded * 1e6:>12.1f}us"
              f"{bounded / bare:>8.2f}")  # fmt: skip
    refusal = median_s(refused(NESTED), 2000)
    print(f"{'1,000 levels (refused, 400)':<34}{len(NESTED):>10}{'RecursionError':>14}"
          f"{refusal * 1e6:>12.1f}us")  # fmt: skip


if __name__ == "__main__":
    main()
