"""The composition root: every service's collaborators, built from the settings in one place.

Domain modules take their collaborators as arguments (a `...Deps` dataclass or parameters) and
never reach for a global client; `functions/` asks this module for them and for nothing else.

One caching rule: each builder below is decorated with `@per_settings`, which builds its value
once per `Settings` object and keeps it until the settings change. `get_settings()` is itself
cached, so in a Functions worker everything is built once; a test that points the process at
another stack calls `reset()` (or `clients.reset_clients()`, which drops the settings) and the
next call builds everything afresh. Caches that must live across invocations (token provider,
webhook record cache, JWKS) live inside the values built here, so they follow the same rule.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from shared.core.settings import Settings, get_settings
from shared.storage import clients

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: builders ask for each other
_built: dict[str, tuple[Settings, Any]] = {}


def per_settings(build: Callable[[Settings], T]) -> Callable[[], T]:
    """Build once per `Settings` object (module docstring); thread-safe."""

    @functools.wraps(build)
    def get() -> T:
        settings = get_settings()
        with _lock:
            hit = _built.get(build.__qualname__)
            if hit is not None and hit[0] is settings:
                return hit[1]  # type: ignore[no-any-return]
            value = build(settings)
            _built[build.__qualname__] = (settings, value)
            return value

    return get


def reset() -> None:
    """Forget everything built here and the process's clients and settings (tests)."""
    with _lock:
        _built.clear()
    clients.reset_clients()


# ---------------------------------------------------------------- storage, Key Vault, Graph
# (builders for the shared collaborators: secret store, Graph client, audit log)


# ---------------------------------------------------------------- api (auth, health)


# ---------------------------------------------------------------- connect


# ---------------------------------------------------------------- directory and mapping


# ---------------------------------------------------------------- bookings and availability


# ---------------------------------------------------------------- subscriptions


# ---------------------------------------------------------------- sync
