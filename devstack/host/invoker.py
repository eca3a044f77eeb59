"""Run one function invocation: inject bindings, run the user code, collect outputs, log it.

Sync functions run in a thread pool and async ones on the event loop, as the Python worker does,
so a slow invocation never blocks the others. The pool size comes from the worker's own knob,
PYTHON_THREADPOOL_THREAD_COUNT; unset, it is Python's ThreadPoolExecutor default
(min(32, cores + 4)), which is also the worker's default on Python 3.9 and later.

Every invocation is logged on `devstack.host` with the function name, trigger, outcome and
duration. Log records written while an invocation runs (the function's own `logging` calls
included, in its thread too) carry ` [name:invocation-id]` through a context variable, so
concurrent invocations' lines can be told apart.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import azure.functions as func

# The abstract trace/retry context types are not re-exported by azure.functions.
from azure.functions._abc import RetryContext, TraceContext

from devstack.host.functions import RETURN, FunctionSpec

logger = logging.getLogger("devstack.host")
T = TypeVar("T")

_current_invocation: contextvars.ContextVar[str] = contextvars.ContextVar(
    "devstack_host_invocation", default=""
)


class InvocationLogFilter(logging.Filter):
    """Adds `record.invocation` (" [name:id]" or "") for the host's log format."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current_invocation.get()
        record.invocation = f" [{current}]" if current else ""
        return True


class OutBinding(func.Out[T], Generic[T]):
    """What the worker passes for an output binding parameter: the function calls `.set()`."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]  # unset reads as None, as in the worker


class _TraceContext(TraceContext):
    def __init__(self, invocation_id: str) -> None:
        # W3C traceparent with the invocation id as trace id: enough for code that logs it.
        self._parent = f"00-{invocation_id.replace('-', '')}-{os.urandom(8).hex()}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context` parameter the worker passes when a function declares one."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _TraceContext(invocation_id)
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return threading.local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


@dataclass
class InvocationResult:
    invocation_id: str
    error: BaseException | None = None
    # Output values by binding name ("$return" included when the function has such a binding).
    outputs: dict[str, Any] = field(default_factory=dict)
    return_value: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None


# Sends the queue outputs of a successful invocation: (spec, binding name → value) -> None.
OutputSender = Callable[[FunctionSpec, Mapping[str, Any]], Awaitable[None]]


def _pool_size() -> int | None:
    text = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if not text:
        return None
    size = int(text)
    if not 1 <= size <= 32_767:
        raise ValueError("PYTHON_THREADPOOL_THREAD_COUNT must be within 1-32767")
    return size


class Invoker:
    def __init__(self, function_directory: str, send_outputs: OutputSender) -> None:
        self._pool = ThreadPoolExecutor(max_workers=_pool_size(), thread_name_prefix="invocation")
        self._function_directory = function_directory
        self._send_outputs = send_outputs
        self._lock = threading.Lock()
        self._threads_busy = 0

    @property
    def threads_busy(self) -> int:
        """Sync invocations still running in the pool (they cannot be cancelled)."""
        with self._lock:
            return self._threads_busy

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run_sync(self, call: Callable[[], Any]) -> Any:
        with self._lock:
            self._threads_busy += 1
        try:
            return call()
        finally:
            with self._lock:
                self._threads_busy -= 1

    async def invoke(
        self, spec: FunctionSpec, trigger_value: Any, detail: str = ""
    ) -> InvocationResult:
        """Run the function once; never raises for the function's own errors (see `.error`)."""
        invocation_id = str(uuid.uuid4())
        result = InvocationResult(invocation_id)
        outs: dict[str, OutBinding[Any]] = {
            o.name: OutBinding() for o in spec.outputs if o.name != RETURN
        }
        kwargs: dict[str, Any] = {spec.trigger_param: trigger_value, **outs}
        if spec.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id, spec.name, self._function_directory
            )
        token = _current_invocation.set(f"{spec.name}:{invocation_id[:8]}")
        started = time.perf_counter()
        outcome = "Failed"
        logger.debug(
            "Executing 'Functions.%s' (trigger=%s%s, id=%s)",
            spec.name, spec.trigger_type, detail, invocation_id,
        )  # fmt: skip
        try:
            if spec.is_async:
                value = await spec.user_function(**kwargs)
            else:
                # copy_context carries the invocation id into the thread for log lines.
                call = functools.partial(
                    contextvars.copy_context().run, spec.user_function, **kwargs
                )
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self._pool, self._run_sync, call)
            result.return_value = value
            result.outputs = {name: out.get() for name, out in outs.items()}
            if spec.output(RETURN) is not None:
                result.outputs[RETURN] = value
            await self._send_outputs(spec, result.outputs)
            outcome = "Succeeded"
        except asyncio.CancelledError as exc:
            # Only at shutdown, after the grace period: the outcome is unknown, say so.
            result.error = exc
            outcome = "Cancelled"
            raise
        except Exception as exc:
            result.error = exc
            # The stack trace goes to the log only; callers never show it to a client.
            logger.error(
                "Function 'Functions.%s' failed (id=%s): %s: %s",
                spec.name, invocation_id, type(exc).__name__, exc, exc_info=exc,
            )  # fmt: skip
        finally:
            logger.info(
                "Executed 'Functions.%s' (%s, trigger=%s%s, id=%s, duration=%dms)",
                spec.name, outcome, spec.trigger_type, detail, invocation_id,
                (time.perf_counter() - started) * 1000,
            )  # fmt: skip
            _current_invocation.reset(token)
        return result
