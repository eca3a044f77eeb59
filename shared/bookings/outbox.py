"""The booking outbox: queue `outbox`, one message per booking that needs its Outlook event brought
in line with the booking (docs/DESIGN.md, "Queues").

A message only says *which* booking to look at (`{building, bookingId, op}`); the worker derives what
to do from the booking's current state (create, move or delete the event), so duplicates, reordering
and an update arriving while a create is still pending are harmless (STYLE.md §8). `op` is kept for
logs and metrics only.

Retries are ours, not the host's: a failed attempt re-enqueues the message with a visibility timeout
that grows per attempt (`backoff`) and counts attempts on the booking, so the bound is exact and a
message never reaches the host's 5-dequeue poison queue for an ordinary Graph outage.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.core.errors import FieldError, ValidationFailed
from shared.storage.tablestore import storage_errors

logger = logging.getLogger(__name__)

QUEUE = "outbox"
Op = Literal["create", "update", "cancel", "check"]
OPS: frozenset[str] = frozenset({"create", "update", "cancel", "check"})
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600  # the Queue service's limit


@dataclass(frozen=True)
class OutboxMessage:
    building: str
    booking_id: str
    op: Op

    def encode(self) -> str:
        """The wire form of docs/DESIGN.md: `{"building", "bookingId", "op"}`."""
        body = {"building": self.building, "bookingId": self.booking_id, "op": self.op}
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @staticmethod
    def decode(text: str) -> OutboxMessage:
        try:
            data = json.loads(text)
            op = str(data["op"])
            if op not in OPS:
                raise ValueError(op)
            return OutboxMessage(str(data["building"]), str(data["bookingId"]), op)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed([FieldError("message", "not an outbox message")]) from exc


def backoff(attempt: int, *, base: int, ceiling: int) -> int:
    """Seconds before retry number `attempt` (1 after the first failure): base · 2^(attempt-1),
    capped at `ceiling`. No jitter needed: each booking's clock starts at its own failure."""
    return int(min(ceiling, base * 2 ** max(0, attempt - 1), MAX_VISIBILITY_SECONDS))


class Sender(Protocol):
    def send(self, message: OutboxMessage, *, delay_seconds: int = 0) -> None: ...


class Outbox:
    """Sends outbox messages; `queue` is the `outbox` QueueClient (base64, shared.storage.clients.queue)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def send(self, message: OutboxMessage, *, delay_seconds: int = 0) -> None:
        with storage_errors("enqueue outbox message"):
            self.queue.send_message(
                message.encode(),
                visibility_timeout=max(0, min(delay_seconds, MAX_VISIBILITY_SECONDS)) or None,
            )
        logger.debug(
            "outbox %s for booking %s in %ss", message.op, message.booking_id, delay_seconds
        )
