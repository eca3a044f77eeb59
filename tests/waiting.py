"""Waiting in tests: on a condition, with a deadline, never on the clock alone.

A fixed sleep is either too short on a slow machine (a flaky test) or too long everywhere (a slow
suite); waiting for the thing itself is neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float = 3.0, what: str = "", interval: float = 0.05
) -> T:
    """The first truthy value of `condition()` within `timeout` seconds; AssertionError naming
    `what` (or the condition) when there is none."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(condition, "__name__", "a condition")
            raise AssertionError(f"timed out after {timeout} s waiting for {name}")
        time.sleep(interval)
