"""Outlook's per (app, mailbox) limits: 4 concurrent requests and 10,000 requests per 10 minutes.

Exceeding on one mailbox doesn't affect others. The 10-minute window runs on the emulator clock.
Limits are adjustable (control API) so tests can reach them cheaply.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .errors import GraphError


@dataclass
class Throttle:
    concurrent_limit: int = 4
    window_limit: int = 10_000
    window_seconds: float = 600.0
    concurrency_retry_after: int = 1
    inflight: dict[tuple[str, str], int] = field(default_factory=dict)
    history: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    throttled: int = 0

    def enter(self, app: str, mailbox: str, now: float) -> None:
        key = (app, mailbox)
        if self.inflight.get(key, 0) >= self.concurrent_limit:
            self.throttled += 1
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                headers={"Retry-After": str(self.concurrency_retry_after)},
            )
        seen = self.history.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_seconds:
            seen.popleft()
        if len(seen) >= self.window_limit:
            self.throttled += 1
            wait = max(1, math.ceil(seen[0] + self.window_seconds - now))
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxRequests limit.",  # 10,000 per 10 minutes
                headers={"Retry-After": str(wait)},
            )
        seen.append(now)
        self.inflight[key] = self.inflight.get(key, 0) + 1

    def leave(self, app: str, mailbox: str) -> None:
        key = (app, mailbox)
        left = self.inflight.get(key, 1) - 1
        if left <= 0:
            self.inflight.pop(key, None)
        else:
            self.inflight[key] = left

    def configure(self, body: dict[str, object]) -> None:
        if "concurrent" in body:
            self.concurrent_limit = int(body["concurrent"])  # type: ignore[call-overload]
        if "perTenMinutes" in body:
            self.window_limit = int(body["perTenMinutes"])  # type: ignore[call-overload]
        if body.get("reset"):
            self.history.clear()
