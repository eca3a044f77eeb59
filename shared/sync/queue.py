"""The sync work queue: one message says "this mailbox (or this mapped calendar) needs a sync round".

Producers: the Graph webhook (a mailbox changed), lifecycle notifications (missed, removed),
mapping changes (a calendar was mapped or unmapped), the reconciliation timer and the forced-resync
route. Consumer: the sync worker, which derives everything from Graph (delta), so duplicates and
reordering are harmless (STYLE.md §8).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from shared.core.errors import FieldError, ValidationFailed
from shared.storage import tablestore

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

QUEUE = "notifications"
POISON_QUEUE = QUEUE + "-poison"  # where the host moves a message after its last retry

Reason = Literal["notified", "mapped", "unmapped", "resync", "missed", "reconcile"]
REASONS: frozenset[str] = frozenset(
    {"notified", "mapped", "unmapped", "resync", "missed", "reconcile"}
)


@dataclass(frozen=True)
class SyncRequest:
    building: str
    mailbox: str  # lower-cased SMTP address (or user id) of the mailbox
    reason: Reason
    resource: str | None = None  # one mapped calendar; None: every mapped calendar of the mailbox
    full: bool = False  # drop delta state and reconcile from a fresh baseline

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @staticmethod
    def decode(text: str) -> SyncRequest:
        try:
            data = json.loads(text)
            reason = str(data["reason"])
            if reason not in REASONS:
                raise ValueError(reason)
            return SyncRequest(
                building=str(data["building"]),
                mailbox=str(data["mailbox"]).lower(),
                reason=reason,  # type: ignore[arg-type]
                resource=str(data["resource"]) if data.get("resource") else None,
                full=bool(data.get("full", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed([FieldError("message", "not a sync request")]) from exc


def send(queue: QueueClient, request: SyncRequest, delay: float = 0) -> None:
    """Put a request on the sync queue, visible after `delay` seconds (whole seconds; less than
    one is now)."""
    with tablestore.storage_errors("enqueue sync request"):
        queue.send_message(request.encode(), visibility_timeout=int(delay) if delay >= 1 else None)


def peek(queue: QueueClient, limit: int) -> list[str]:
    """The bodies of up to `limit` messages at the head of a queue, leaving them there."""
    with tablestore.storage_errors(f"peek {queue.queue_name}"):
        return [str(m.content) for m in queue.peek_messages(max_messages=limit)]
