"""Timer triggers: fire a function on its schedule, one invocation at a time.

As in Azure, a timer function never overlaps itself: the next occurrence is waited for only after
the current invocation has finished. If that made the host miss one or more occurrences (a long
run, a suspended laptop), the function fires once, immediately, with `past_due=True`, and the
schedule then continues from the present: missed occurrences are not replayed one by one.

`run_on_startup=True` fires once when the host starts. Schedule status is not persisted
(`use_monitor` has no store to use here), so occurrences missed while the host was down are not
detected on the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devstack.host.functions import FunctionSpec, TimerTriggerSpec
from devstack.host.invoker import Invoker

logger = logging.getLogger("devstack.host")

# Waking this much later than the occurrence (the process was suspended) also counts as past due;
# ordinary scheduling jitter is milliseconds.
LATE_WAKE_TOLERANCE = timedelta(seconds=1)


def _iso(moment: datetime | None) -> str:
    # Azure reports "0001-01-01T00:00:00" for "never"; keep the same shape.
    return moment.isoformat() if moment is not None else "0001-01-01T00:00:00"


class TimerRunner:
    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        stopping: asyncio.Event,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert isinstance(spec.trigger, TimerTriggerSpec)
        self.spec = spec
        self.trigger = spec.trigger
        self._invoker = invoker
        self._stopping = stopping
        self._now = clock
        self._last: datetime | None = None

    async def _sleep_until(self, moment: datetime) -> bool:
        """Wait until `moment` (wall clock); False when the host is stopping instead."""
        while (remaining := (moment - self._now()).total_seconds()) > 0:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=remaining)
                return False
            except TimeoutError:
                pass  # loop: asyncio's monotonic clock may wake a hair before the wall clock
        return not self._stopping.is_set()

    async def _fire(self, past_due: bool, next_occurrence: datetime) -> None:
        now = self._now()
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": _iso(self._last),
                "Next": _iso(next_occurrence),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        self._last = now
        detail = f", schedule='{self.trigger.schedule.expression}', past_due={past_due}"
        await self._invoker.invoke(self.spec, request, detail)

    async def run(self) -> None:
        schedule = self.trigger.schedule
        if self.trigger.run_on_startup and not self._stopping.is_set():
            await self._fire(False, schedule.next_after(self._now()))
        occurrence = schedule.next_after(self._now())
        while not self._stopping.is_set():
            # Already in the past when we start waiting: the previous run overlapped it.
            past_due = occurrence <= self._now()
            if not past_due:
                if not await self._sleep_until(occurrence):
                    return
                past_due = self._now() - occurrence > LATE_WAKE_TOLERANCE
            following = schedule.next_after(self._now() if past_due else occurrence)
            await self._fire(past_due, following)
            # After a past-due run, continue from now: missed occurrences fire once, not each.
            occurrence = schedule.next_after(self._now() if past_due else occurrence)
