"""Injected faults (control API `/_emulator/graph/faults`).

A request rule matches by method and path glob (relative to `/v1.0`, e.g. `/users/*/events*`; a
`re:` prefix means a regular expression) and, with probability `rate`, answers with `status` (Graph
error shape, optional `Retry-After`) and/or adds `latencyMs`. `count` limits how often it fires.
With `after: true` the request is carried out first and only its answer is replaced (or delayed):
a write that reached Outlook whose response was lost on the way back (a timeout, a 5xx from a
gateway), the case a client's retry must not turn into a second event.
Notification faults drop, duplicate or delay change notifications.
"""

from __future__ import annotations

import fnmatch
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CODES = {
    429: ("TooManyRequests", "Please retry again later."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway timed out."),
}


@dataclass
class FaultRule:
    id: str
    method: str | None
    pattern: str
    status: int | None
    rate: float
    latency_ms: int
    count: int | None
    retry_after: int | None
    code: str | None
    message: str | None
    mailbox: str | None
    after: bool = False  # the operation runs, then the fault replaces or delays its answer
    fired: int = 0
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    def matches(self, method: str, path: str, mailbox: str | None) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.mailbox and (mailbox or "").lower() != self.mailbox.lower():
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        if self._regex is not None:
            return bool(self._regex.search(path))
        return fnmatch.fnmatchcase(path.lower(), self.pattern.lower())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.pattern,
            "status": self.status,
            "rate": self.rate,
            "latencyMs": self.latency_ms,
            "count": self.count,
            "retryAfter": self.retry_after,
            "code": self.code,
            "message": self.message,
            "mailbox": self.mailbox,
            "after": self.after,
            "fired": self.fired,
        }


@dataclass
class NotificationFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dropRate": self.drop_rate,
            "duplicateRate": self.duplicate_rate,
            "delayMs": self.delay_ms,
        }


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)
    notifications: NotificationFaults = field(default_factory=NotificationFaults)
    rng: random.Random = field(default_factory=random.Random)

    def add(self, body: dict[str, Any]) -> FaultRule:
        pattern = str(body.get("path") or "*")
        rule = FaultRule(
            id=str(body.get("id") or uuid.uuid4()),
            method=body.get("method"),
            pattern=pattern,
            status=int(body["status"]) if body.get("status") is not None else None,
            rate=float(body.get("rate", 1.0)),
            latency_ms=int(body.get("latencyMs", 0)),
            count=int(body["count"]) if body.get("count") is not None else None,
            retry_after=int(body["retryAfter"]) if body.get("retryAfter") is not None else None,
            code=body.get("code"),
            message=body.get("message"),
            mailbox=body.get("mailbox"),
            after=bool(body.get("after", False)),
        )
        if pattern.startswith("re:"):
            rule._regex = re.compile(pattern[3:], re.I)
        self.rules.append(rule)
        return rule

    def pick(self, method: str, path: str, mailbox: str | None) -> list[FaultRule]:
        """Rules that fire for this request (each rolls its own rate)."""
        fired = []
        for rule in self.rules:
            if rule.matches(method, path, mailbox) and self.rng.random() < rule.rate:
                rule.fired += 1
                fired.append(rule)
        return fired

    def set_notifications(self, body: dict[str, Any]) -> None:
        n = self.notifications
        n.drop_rate = float(body.get("dropRate", n.drop_rate))
        n.duplicate_rate = float(body.get("duplicateRate", n.duplicate_rate))
        n.delay_ms = int(body.get("delayMs", n.delay_ms))

    def clear(self) -> None:
        self.rules.clear()
        self.notifications = NotificationFaults()

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [r.to_json() for r in self.rules],
            "notifications": self.notifications.to_json(),
        }
