"""Health of the dependencies: tables, queues, Key Vault, Graph. Bounded in time, never slow.

The checks themselves are built in shared/wiring.py (`health_checks`); this module runs them.

Each check runs in its own thread with a deadline, so one hung dependency costs at most the deadline
and never blocks the others. A check that raises or misses the deadline is `degraded`; the detail
logged is the exception type only (messages can carry URLs with secrets in SAS tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Literal

logger = logging.getLogger(__name__)

Status = Literal["ok", "degraded"]
DEFAULT_DEADLINE_S = 3.0
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


def run_checks(
    checks: Mapping[str, Callable[[], object]], deadline_s: float = DEFAULT_DEADLINE_S
) -> dict[str, object]:
    """Run every check concurrently; report `ok` when all pass, else `degraded`, per component."""
    futures = {name: _pool.submit(check) for name, check in checks.items()}
    wait(futures.values(), timeout=deadline_s)
    components: dict[str, Status] = {}
    for name, future in futures.items():
        if not future.done():
            logger.warning("health check %s missed its %.1f s deadline", name, deadline_s)
            components[name] = "degraded"
        elif (exc := future.exception()) is not None:
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            components[name] = "degraded"
        else:
            components[name] = "ok"
    overall: Status = "ok" if all(v == "ok" for v in components.values()) else "degraded"
    return {"status": overall, "components": components}
