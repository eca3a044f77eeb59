"""Counters for the control API: requests per endpoint / mailbox / status, notification delivery.

Per notification URL it keeps what Graph's webhook throttling looks at: deliveries, failures and
how many took longer than 2,900 ms ("slow").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_ID_SEGMENT = re.compile(r"^(AAMk|AAkA)[A-Za-z0-9_=-]+$|^[0-9a-f-]{36}$|@")


def endpoint_template(method: str, path: str) -> str:
    """`GET /users/{id}/events/{id}`: ids and addresses folded so counters stay few."""
    segs = [("{id}" if _ID_SEGMENT.search(s) else s) for s in path.strip("/").split("/") if s]
    return f"{method.upper()} /" + "/".join(segs)


@dataclass
class UrlStats:
    delivered: int = 0
    failed: int = 0
    slow: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, ms: float, ok: bool, slow_ms: int) -> None:
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
        if ms > slow_ms:
            self.slow += 1
        self.latencies_ms.append(round(ms, 1))
        if len(self.latencies_ms) > 1000:
            del self.latencies_ms[:200]

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        total = self.delivered + self.failed
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "slow": self.slow,
            "slowPercent": round(100.0 * self.slow / total, 1) if total else 0.0,
            "latencyMs": {
                "count": len(lat),
                "avg": round(sum(lat) / len(lat), 1) if lat else None,
                "p50": lat[len(lat) // 2] if lat else None,
                "max": lat[-1] if lat else None,
                "recent": self.latencies_ms[-20:],
            },
        }


@dataclass
class Stats:
    total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_mailbox: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    notifications_enqueued: int = 0
    notifications_delivered: int = 0
    notifications_dropped: int = 0
    notifications_duplicated: int = 0
    notification_retries: int = 0
    lifecycle_sent: Counter[str] = field(default_factory=Counter)
    change_latency_ms: list[float] = field(default_factory=list)  # change → delivered
    per_url: dict[str, UrlStats] = field(default_factory=dict)

    def request(self, method: str, path: str, mailbox: str | None, status: int) -> None:
        self.total += 1
        self.by_endpoint[endpoint_template(method, path)] += 1
        if mailbox:
            self.by_mailbox[mailbox] += 1
        self.by_status[str(status)] += 1

    def url(self, url: str) -> UrlStats:
        # Query strings may hold function keys: count per URL without them.
        return self.per_url.setdefault(url.split("?", 1)[0], UrlStats())

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.change_latency_ms)
        return {
            "requests": {
                "total": self.total,
                "byEndpoint": dict(self.by_endpoint),
                "byMailbox": dict(self.by_mailbox),
                "byStatus": dict(self.by_status),
            },
            "notifications": {
                "enqueued": self.notifications_enqueued,
                "delivered": self.notifications_delivered,
                "dropped": self.notifications_dropped,
                "duplicated": self.notifications_duplicated,
                "retries": self.notification_retries,
                "lifecycle": dict(self.lifecycle_sent),
                "changeToDeliveryMs": {
                    "count": len(lat),
                    "avg": round(sum(lat) / len(lat), 1) if lat else None,
                    "max": lat[-1] if lat else None,
                },
                "byUrl": {u: s.to_json() for u, s in self.per_url.items()},
            },
        }
