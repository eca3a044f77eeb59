"""The sync work queue: one message says "this mailbox (or this mapped calendar) needs a sync round".

Producers: the Graph webhook (a mailbox changed), lifecycle notifications (missed, removed),
mapping changes (a calendar was mapped or unmapped), the reconciliation timer and the forced-resync
route. Consumer: the sync worker, which derives everything from Graph (delta), so duplicates and
reordering are harmless (STYLE.md §8).

A message holds one request, or (from the webhook, `GroupSend`) a batch of them:
`{"requests": [...]}`. `decode_all` reads both.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
            return SyncRequest.of(json.loads(text))
        except ValueError as exc:
            raise _not_a_request() from exc

    @staticmethod
    def of(data: Any) -> SyncRequest:
        try:
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
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _not_a_request() from exc


def _not_a_request() -> ValidationFailed:
    return ValidationFailed([FieldError("message", "not a sync request")])


# The text of one batch message at most: base64 (the queue triggers' encoding) makes it 4/3 of
# this, under the 64 KiB a Storage queue message may hold. A request is 100-500 characters.
MAX_BATCH_CHARS = 32 * 1024


def encode_batches(requests: Sequence[SyncRequest]) -> list[str]:
    """Message texts carrying `requests`: one request as itself, more as batches of at most
    MAX_BATCH_CHARS each."""
    if len(requests) == 1:
        return [requests[0].encode()]
    texts: list[str] = []
    batch: list[str] = []
    size = _EMPTY_BATCH
    for request in requests:
        text = request.encode()
        if batch and size + len(text) + 1 > MAX_BATCH_CHARS:  # + 1: its comma
            texts.append(_batch_text(batch))
            batch, size = [], _EMPTY_BATCH
        batch.append(text)
        size += len(text) + 1
    if batch:
        texts.append(_batch_text(batch))
    return texts


def _batch_text(encoded: list[str]) -> str:
    return '{"requests":[' + ",".join(encoded) + "]}"


_EMPTY_BATCH = len(_batch_text([]))  # the wrapper counts towards MAX_BATCH_CHARS too


def decode_all(text: str) -> list[SyncRequest]:
    """The requests of one message: a single request or a batch (`encode_batches`)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _not_a_request() from exc
    if isinstance(data, dict) and "requests" in data:
        items = data["requests"]
        if not isinstance(items, list) or not items:
            raise _not_a_request()
        return [SyncRequest.of(item) for item in items]
    return [SyncRequest.of(data)]


def send(queue: QueueClient, request: SyncRequest, delay: float = 0) -> None:
    """Put a request on the sync queue, visible after `delay` seconds (whole seconds; less than
    one is now)."""
    with tablestore.storage_errors("enqueue sync request"):
        queue.send_message(request.encode(), visibility_timeout=int(delay) if delay >= 1 else None)


def send_all(queue: QueueClient, requests: Sequence[SyncRequest]) -> None:
    """Put requests on the sync queue, visible now, in as few messages as fit."""
    with tablestore.storage_errors("enqueue sync requests"):
        for text in encode_batches(requests):
            queue.send_message(text)


@dataclass
class _Batch:
    requests: dict[SyncRequest, None] = field(default_factory=dict)  # ordered, no repeats
    done: bool = False
    error: BaseException | None = None


class GroupSend:
    """Sync requests from many threads in few queue messages (a group commit): while one
    message is on its way, the requests arriving meanwhile collect, and the first of their
    callers sends them all in the next. A slower queue thus makes for fuller messages, not for
    a longer line: one Storage write per POST made the webhook's writes the storage's load
    (and on Azurite, whose queue operations slow with the queue's depth, a backlog that fed
    itself; DESIGN.md, issue 17). A quiet webhook still sends each POST's requests at once.

    A call returns once its requests are on the queue, or raises the error of the send that
    carried them (so the webhook answers 503 and Graph retries). Repeats within a batch are
    sent once: the worker derives everything from Graph, so one round serves them all.
    """

    def __init__(self, send: Callable[[list[SyncRequest]], None], limit: int = 100) -> None:
        self._send = send
        self._limit = limit  # requests a caller adds to a batch that is still open
        self._cv = threading.Condition()
        self._open: deque[_Batch] = deque()  # collecting, oldest first
        self._sending = False

    def __call__(self, requests: Sequence[SyncRequest]) -> None:
        if not requests:
            return
        with self._cv:
            if not self._open or len(self._open[-1].requests) >= self._limit:
                self._open.append(_Batch())
            batch = self._open[-1]
            batch.requests.update(dict.fromkeys(requests))
            self._cv.wait_for(lambda: batch.done or (not self._sending and self._open[0] is batch))
            if not batch.done:
                self._open.popleft()
                self._sending = True
        if not batch.done:
            try:
                self._send(list(batch.requests))
            except BaseException as err:  # every caller of the batch gets it
                batch.error = err
            with self._cv:
                batch.done = True
                self._sending = False
                self._cv.notify_all()
        if batch.error is not None:
            raise batch.error


def peek(queue: QueueClient, limit: int) -> list[str]:
    """The bodies of up to `limit` messages at the head of a queue, leaving them there."""
    with tablestore.storage_errors(f"peek {queue.queue_name}"):
        return [str(m.content) for m in queue.peek_messages(max_messages=limit)]
