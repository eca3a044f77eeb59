"""The check sweeper (`%BB_CHECKS_SWEEP_SCHEDULE%`): a run that died leaves nothing behind.

It reads the lock partition of the `checks` table (one row per building with a run that has not
released its lock) and, for each:
- a run whose heartbeat is older than `CheckConfig.stale_after` (the worker died, timed out or
  the message was lost) is marked `abandoned`, and every resource's artefacts are removed: Outlook
  events (by recorded id and by the run's extended property, through Graph), the test booking
  (found by its idempotency key, cancelled through the booking service, its rows removed), busy
  blocks of the run's slots that are the run's;
- a finished run whose own clean-up left something is cleaned again;
- a lock without a run is released.
The lock is released once nothing is left, so the next POST can start a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from shared.checks.deps import CheckDeps
from shared.checks.model import FINISHED
from shared.checks.runner import _audit, abandon_resources, announce_completed
from shared.core.errors import BookingBridgeError
from shared.storage import tablestore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    abandoned: int = 0
    cleaned: int = 0
    still_left: int = 0


def sweep(deps: CheckDeps) -> SweepResult:
    abandoned = cleaned = still_left = 0
    now = deps.now()
    for lock in list(deps.store.locks()):
        building, run_id = str(lock.get("building") or ""), str(lock.get("runId") or "")
        try:
            run = deps.store.get_run(building, run_id) if building and run_id else None
            if run is None:
                tablestore.delete_if_unchanged(deps.store.table, lock)
                continue
            beat = lock.get("heartbeatAt")
            fresh = (
                beat is not None and now - tablestore.stored_time(beat) < deps.config.stale_after
            )
            if run.status not in FINISHED and fresh:
                continue  # alive
            if run.status in FINISHED and (run.cleanup or {}).get("status") == "clean":
                deps.store.release(building, run_id)
                continue
            left = abandon_resources(deps, run)
            if run.status not in FINISHED:
                abandoned += 1
                run = replace(run, status="abandoned", finished_at=deps.now())
                announce_completed(deps, run)
            cleaned += 1
            run = replace(run, cleanup={"status": "clean" if not left else "leftovers",
                                        "leftovers": left, "by": "sweeper"})  # fmt: skip
            deps.store.put_run(run)
            _audit(deps, run, "check.sweep", f"{run.status}; cleanup {run.cleanup['status']}",
                   200 if not left else 500)  # fmt: skip
            if left:
                still_left += 1
            else:
                deps.store.release(building, run_id)
        except BookingBridgeError as err:
            logger.warning("check sweep %s/%s failed: %s", building, run_id, err.log_detail)
            still_left += 1
    return SweepResult(abandoned, cleaned, still_left)
