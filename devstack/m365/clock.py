"""The emulator clock: real time plus an offset that tests and the control API can move.

Every expiry in the emulator (authorization codes, access and refresh tokens, subscriptions, delta
tokens) is judged on this clock, so a test can jump 91 days ahead in one call instead of waiting.
The clock only moves forward with real time and explicit advances; `set` exists for completeness.
"""

from __future__ import annotations

import datetime as dt
import threading


class Clock:
    """UTC, timezone-aware emulator time. Thread-safe (the server and tests may share it)."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = dt.timedelta(seconds=offset_seconds)

    def now(self) -> dt.datetime:
        with self._lock:
            offset = self._offset
        return dt.datetime.now(dt.UTC) + offset

    def timestamp(self) -> float:
        """`now()` as POSIX seconds (what JWT `iat`/`exp` use)."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> dt.datetime:
        if seconds < 0:
            # Time running backwards would let expired codes and tokens come back to life.
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)
        return self.now()

    def set(self, when: dt.datetime) -> dt.datetime:
        if when.tzinfo is None:
            raise ValueError("set() needs a timezone-aware datetime")
        with self._lock:
            self._offset = when - dt.datetime.now(dt.UTC)
        return self.now()

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset.total_seconds()
