"""Graph's throttling as Microsoft documents it (concepts/throttling-limits.md):
- Outlook, per (app, mailbox): 4 concurrent requests (`MailboxConcurrency`) and 10,000 requests
  per 10 minutes (`MailboxRequests`); exceeding on one mailbox doesn't affect others;
- the global limit, per app across all tenants: 130,000 requests per 10 seconds (every request,
  mailbox or not; each `$batch` item counts, the batch itself not).
The windows run on the emulator clock. Every figure is adjustable (control API `graph/faults`
`{"throttle": {...}}`), so tests reach a limit cheaply and benches can be stricter than Microsoft
(e.g. issue 17's 2,000 requests per second per app); DELETE graph/faults restores the defaults.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, fields

from .errors import GraphError


@dataclass
class Throttle:
    concurrent_limit: int = 4
    window_limit: int = 10_000
    window_seconds: float = 600.0
    concurrency_retry_after: int = 1
    app_limit: int = 130_000
    app_window_seconds: float = 10.0
    inflight: dict[tuple[str, str], int] = field(default_factory=dict)
    history: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    app_history: dict[str, deque[float]] = field(default_factory=dict)
    throttled: int = 0

    def app_request(self, app: str, now: float) -> None:
        """Count one request of `app` (any tenant, any path) against the global limit."""
        seen = self.app_history.setdefault(app, deque())
        while seen and seen[0] <= now - self.app_window_seconds:
            seen.popleft()
        if len(seen) >= self.app_limit:
            self.throttled += 1
            wait = max(1, math.ceil(seen[0] + self.app_window_seconds - now))
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests: the application is over its global request limit.",
                headers={"Retry-After": str(wait)},
            )
        seen.append(now)

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
        if "perApp" in body:
            self.app_limit = int(body["perApp"])  # type: ignore[call-overload]
        if "perAppSeconds" in body:
            self.app_window_seconds = float(body["perAppSeconds"])  # type: ignore[arg-type]
        if body.get("reset"):
            self.history.clear()
            self.app_history.clear()

    def restore_defaults(self) -> None:
        """Microsoft's figures again, windows emptied (requests in flight stay counted)."""
        for f in fields(self):
            if f.name not in ("inflight", "throttled") and not callable(f.default_factory):
                setattr(self, f.name, f.default)
        self.history.clear()
        self.app_history.clear()
