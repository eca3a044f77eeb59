"""Queue triggers and queue output bindings on Azure Storage queues (Azurite locally).

The listener follows the WebJobs queue processor:
- it receives up to `batchSize` messages at once and runs them concurrently, fetching the next
  batch when the number still running drops to `newBatchThreshold`;
- a received message is leased (invisible) for `LEASE`, renewed at half-time while the function
  runs, so a long invocation is not picked up twice;
- on success the message is deleted; on failure it is released with host.json's
  `visibilityTimeout` (Azure's default 0: visible again at once), and when its dequeue count has
  reached `maxDequeueCount` it is copied, body unchanged, to `<queue>-poison` and deleted;
- an empty queue is polled with exponential back-off from 100 ms to `maxPollingInterval`, and a
  message this host itself writes to a queue it listens on wakes that listener at once (the
  WebJobs SDK does the same);
- queues (and poison queues) are created when missing.

Message bodies are base64 by default (host.json `messageEncoding`), both ways. The storage SDK is
synchronous; its calls run on a small I/O thread pool so the event loop never waits on Azurite.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from devstack.host.config import HostConfigError, QueueOptions
from devstack.host.functions import FunctionSpec, QueueTriggerSpec
from devstack.host.invoker import Invoker

logger = logging.getLogger("devstack.host")
T = TypeVar("T")

# How long a received message stays invisible while its function runs (renewed at half-time).
# Azure uses 10 minutes; a crashed local host should not hide messages that long.
LEASE = timedelta(seconds=60)
MIN_POLLING_INTERVAL = 0.1

# Azurite's well-known development account, which "UseDevelopmentStorage=true" means.
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def resolve_connection(setting: str, environ: Mapping[str, str]) -> str:
    """The connection string behind a binding's `connection` app setting name.

    Like the Functions host, tries the name itself, then `AzureWebJobs<name>`.
    """
    for name in (setting, f"AzureWebJobs{setting}"):
        value = environ.get(name, "").strip()
        if value:
            if value.lower().replace(" ", "") == "usedevelopmentstorage=true":
                return _DEVELOPMENT_STORAGE
            return value
    raise HostConfigError(
        f"connection {setting!r}: app setting {setting} is not set (it must hold a storage "
        "connection string; identity-based connections are not supported by this host)"
    )


def encode_body(body: str | bytes, encoding: str) -> str:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if encoding == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8")


def decode_body(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.b64decode(content, validate=True)
    return content.encode("utf-8")


def _message_bodies(value: Any, where: str) -> list[str | bytes]:
    """What the worker accepts for a queue output: str, bytes, QueueMessage, or a list of them."""
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, list) else [value]
    bodies: list[str | bytes] = []
    for item in items:
        if isinstance(item, str | bytes):
            bodies.append(item)
        elif isinstance(item, func.QueueMessage):
            bodies.append(item.get_body())
        else:
            raise TypeError(
                f"{where}: a queue output takes str, bytes, func.QueueMessage or a list of them, "
                f"not {type(item).__name__}"
            )
    return bodies


class QueueService:
    """Queue clients per (connection string, queue), created on first use; I/O off the loop."""

    def __init__(self, environ: Mapping[str, str], options: QueueOptions) -> None:
        self._environ = environ
        self.options = options
        self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="queue-io")
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()
        # Listeners by (connection string, queue name): a write there wakes the listener.
        self._wakers: dict[tuple[str, str], Callable[[], None]] = {}

    async def io(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: call(*args, **kwargs))

    def client(self, connection_setting: str, queue_name: str) -> QueueClient:
        conn = resolve_connection(connection_setting, self._environ)
        key = (conn, queue_name)
        if key not in self._clients:
            # No encode/decode policy: bodies are handled here, so a poison copy stays verbatim.
            self._clients[key] = QueueClient.from_connection_string(conn, queue_name)
        return self._clients[key]

    async def ensure_queue(self, client: QueueClient) -> None:
        key = (client.url, client.queue_name)
        if key in self._created:
            return
        with contextlib.suppress(ResourceExistsError):  # created by someone else: fine
            await self.io(client.create_queue)
        self._created.add(key)

    def register_waker(self, client: QueueClient, wake: Callable[[], None]) -> None:
        self._wakers[(client.url, client.queue_name)] = wake

    async def send(self, client: QueueClient, contents: list[str]) -> None:
        await self.ensure_queue(client)
        for content in contents:
            await self.io(client.send_message, content)
        wake = self._wakers.get((client.url, client.queue_name))
        if wake is not None and contents:
            wake()

    async def send_outputs(self, spec: FunctionSpec, values: Mapping[str, Any]) -> None:
        """Send what a successful invocation set on its queue outputs (OutputSender)."""
        for output in spec.outputs:
            if output.type != "queue" or output.name not in values:
                continue
            assert output.queue_name is not None and output.connection is not None
            where = f"function {spec.name} output {output.name}"
            bodies = _message_bodies(values[output.name], where)
            if bodies:
                client = self.client(output.connection, output.queue_name)
                encoding = self.options.message_encoding
                await self.send(client, [encode_body(b, encoding) for b in bodies])

    def close(self) -> None:
        self._io.shutdown(wait=False, cancel_futures=True)
        for client in self._clients.values():
            client.close()


def to_function_message(message: StorageMessage, body: bytes) -> func.QueueMessage:
    from azure.functions.queue import QueueMessage  # the concrete class the worker builds

    return QueueMessage(  # type: ignore[no-untyped-call]  # the library leaves it unannotated
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )


class QueueListener:
    """Drives one queue-triggered function from its queue until `stop()`."""

    def __init__(
        self, spec: FunctionSpec, service: QueueService, invoker: Invoker, stopping: asyncio.Event
    ) -> None:
        assert isinstance(spec.trigger, QueueTriggerSpec)
        self.spec = spec
        self.trigger = spec.trigger
        self._service = service
        self._options = service.options
        self._invoker = invoker
        self._stopping = stopping
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._client = service.client(self.trigger.connection, self.trigger.queue_name)
        self._poison = service.client(self.trigger.connection, f"{self.trigger.queue_name}-poison")
        service.register_waker(self._client, self._wake.set)

    def wake(self) -> None:
        self._wake.set()
        self._slot_freed.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but return early when woken (new message, or stopping)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def run(self) -> None:
        interval = MIN_POLLING_INTERVAL
        max_interval = max(self._options.max_polling_interval.total_seconds(), interval)
        lease = int(LEASE.total_seconds())
        failing = False
        while not self._stopping.is_set():
            if len(self._running) > self._options.new_batch_threshold:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                await self._service.ensure_queue(self._client)
                messages: list[StorageMessage] = await self._service.io(
                    lambda: list(
                        self._client.receive_messages(
                            messages_per_page=self._options.batch_size,
                            max_messages=self._options.batch_size,
                            visibility_timeout=lease,
                        )
                    )
                )
                if failing:
                    logger.info("Queue %s is reachable again", self.trigger.queue_name)
                    failing = False
            except AzureError as exc:
                # Storage down or not started yet: keep trying, but say so only once.
                if not failing:
                    logger.warning(
                        "Cannot poll queue %s for %s (%s); retrying",
                        self.trigger.queue_name, self.spec.name, type(exc).__name__,
                    )  # fmt: skip
                    failing = True
                await self._pause(max_interval)
                continue
            if not messages:
                await self._pause(interval)
                interval = min(interval * 2, max_interval)
                continue
            interval = MIN_POLLING_INTERVAL
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._running.add(task)
                task.add_done_callback(self._finished)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("Queue message handling failed", exc_info=task.exception())

    async def _process(self, message: StorageMessage) -> None:
        queue = self.trigger.queue_name
        max_count = self._options.max_dequeue_count
        dequeue_count = message.dequeue_count or 1
        if dequeue_count > max_count:
            # Already over the limit before we ran it (a host died mid-invocation): straight to
            # poison, as the WebJobs SDK does.
            await self._move_to_poison(message, message.pop_receipt)
            return
        lease = _Lease(self._service, self._client, message)
        lease.start()
        try:
            try:
                body = decode_body(message.content, self._options.message_encoding)
            except (binascii.Error, ValueError):
                logger.error(
                    "Message %s on queue %s is not valid %s; counting it as a failed attempt",
                    message.id, queue, self._options.message_encoding,
                )  # fmt: skip
                ok = False
            else:
                detail = f", queue={queue}, message={message.id}, dequeue_count={dequeue_count}"
                result = await self._invoker.invoke(
                    self.spec, to_function_message(message, body), detail
                )
                ok = result.ok
        finally:
            receipt = await lease.stop()
        try:
            if ok:
                await self._service.io(self._client.delete_message, message.id, receipt)
            elif dequeue_count >= max_count:
                await self._move_to_poison(message, receipt)
            else:
                seconds = math.ceil(self._options.visibility_timeout.total_seconds())
                await self._service.io(
                    self._client.update_message, message.id, receipt, visibility_timeout=seconds
                )
        except AzureError as exc:
            # The lease will lapse and the message come back: logged, not fatal.
            logger.warning("Could not settle message %s on %s: %s", message.id, queue, exc)

    async def _move_to_poison(self, message: StorageMessage, receipt: str | None) -> None:
        logger.warning(
            "Message %s has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            message.id, self._options.max_dequeue_count, self._poison.queue_name,
        )  # fmt: skip
        await self._service.ensure_queue(self._poison)
        # The body is copied verbatim (still base64), so the poison message reads like the original.
        await self._service.io(self._poison.send_message, message.content)
        await self._service.io(self._client.delete_message, message.id, receipt)


class _Lease:
    """Keeps a message invisible while its function runs; tracks the latest pop receipt."""

    def __init__(self, service: QueueService, client: QueueClient, message: StorageMessage) -> None:
        self._service = service
        self._client = client
        self._message = message
        self.receipt: str | None = message.pop_receipt
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        half = LEASE.total_seconds() / 2
        while True:
            try:
                await asyncio.wait_for(self._done.wait(), timeout=half)
                return
            except TimeoutError:
                pass
            try:
                updated = await self._service.io(
                    self._client.update_message,
                    self._message.id,
                    self.receipt,
                    visibility_timeout=int(LEASE.total_seconds()),
                )
                self.receipt = updated.pop_receipt
            except AzureError as exc:
                logger.warning("Could not renew the lease of message %s: %s", self._message.id, exc)

    async def stop(self) -> str | None:
        # Wait (not cancel) so that a renewal in flight lands before we read the receipt.
        self._done.set()
        if self._task is not None:
            await self._task
        return self.receipt
