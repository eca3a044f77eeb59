"""The `checks` table: runs, their per-resource results, and the one-run-per-building lock.

| entity | PartitionKey | RowKey | holds |
|---|---|---|---|
| run | building | `run|<run id>` | status, actor, resources, times, cleanup outcome |
| resource | building | `res|<run id>|<resource>` | the steps so far (JSON), the artefacts written (JSON), the current step |
| lock | `locks` | building | the running run's id, its heartbeat |

Run ids start with the inverted creation time in milliseconds, so one RowKey range query lists a
building's runs newest first. The lock is inserted if absent (a second POST meets it: 409); the
runner renews `heartbeatAt` after every step; it is deleted once the run is over and its clean-up
verified. All lock rows share one partition, so the sweeper finds every building with a live or
dead run in one partition query, whatever the number of buildings.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.checks.model import Artefacts, ResourceRun, Run, StepResult
from shared.core.errors import Conflict, NotFound
from shared.storage import tablestore
from shared.storage.tablestore import Entity

TABLE = "checks"
LOCKS = "locks"
_RUN = "run"
_RESOURCE = "res"
_TIME_SPAN = 10**13  # ms: inverted times stay 13 digits until the year 2286


class CheckRunning(Conflict):
    """Another check of the building has not finished (409, naming it)."""

    def __init__(self, running_id: str) -> None:
        super().__init__(
            f"Go-live check {running_id} is still running on this building; wait for it to "
            f"finish (GET its status) and start another one then",
            reason="check_running",
        )
        self.running_id = running_id


def new_run_id(now: datetime) -> str:
    """Newest first in RowKey order: inverted milliseconds + 8 random hex digits."""
    inverted = _TIME_SPAN - int(now.timestamp() * 1000)
    return f"{inverted:013d}{secrets.token_hex(4)}"


def run_row(run_id: str) -> str:
    return tablestore.join_key(_RUN, run_id)


def resource_row(run_id: str, resource_id: str) -> str:
    return tablestore.join_key(_RESOURCE, run_id, tablestore.escape_key(resource_id))


class CheckStore:
    """Runs and locks in the `checks` table (`table` is its TableClient)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # -- runs
    def put_run(self, run: Run) -> None:
        entity: Entity = {
            "PartitionKey": run.building_id,
            "RowKey": run_row(run.id),
            "status": run.status,
            "createdAt": run.created_at,
            "actor": run.actor,
            "resourceIds": tablestore.json_property(list(run.resource_ids)),
            "cleanup": tablestore.json_property(dict(run.cleanup)),
        }
        if run.started_at:
            entity["startedAt"] = run.started_at
        if run.finished_at:
            entity["finishedAt"] = run.finished_at
        with tablestore.storage_errors("write check run"):
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get_run(self, building_id: str, run_id: str) -> Run | None:
        entity = tablestore.get_entity(self.table, building_id, run_row(run_id))
        return _run_from(entity) if entity else None

    def list_runs(
        self, building_id: str, top: int, continuation_token: str | None = None
    ) -> tuple[list[Run], str | None]:
        """One page of runs, newest first, and the next page's token."""
        low = run_row("")
        page = tablestore.query_page(
            self.table,
            tablestore.PREFIX_FILTER,
            tablestore.prefix_parameters(building_id, low),
            top=top,
            continuation_token=continuation_token,
        )
        return [_run_from(e) for e in page.items], page.continuation_token

    def delete_run(self, building_id: str, run_id: str) -> None:
        for row in [
            run_row(run_id),
            *(e["RowKey"] for e in self._resource_rows(building_id, run_id)),
        ]:
            try:
                with tablestore.storage_errors("delete check run"):
                    self.table.delete_entity(building_id, row)
            except NotFound:
                pass

    # -- per resource
    def put_resource(self, building_id: str, run_id: str, result: ResourceRun) -> None:
        entity: Entity = {
            "PartitionKey": building_id,
            "RowKey": resource_row(run_id, result.resource_id),
            "resourceId": result.resource_id,
            "steps": tablestore.json_property([s.to_json() for s in result.steps]),
            "artefacts": tablestore.json_property(result.artefacts.to_json()),
            "current": result.current or "",
            "finished": result.finished,
        }
        with tablestore.storage_errors("write check resource"):
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def resources(self, building_id: str, run_id: str) -> list[ResourceRun]:
        return [_resource_from(e) for e in self._resource_rows(building_id, run_id)]

    def _resource_rows(self, building_id: str, run_id: str) -> list[Entity]:
        low = tablestore.join_key(_RESOURCE, run_id) + tablestore.KEY_SEPARATOR
        return tablestore.query_all(
            self.table,
            tablestore.PREFIX_FILTER,
            tablestore.prefix_parameters(building_id, low),
        )

    # -- the lock
    def claim(self, building_id: str, run_id: str, now: datetime) -> None:
        """Take the building's lock for `run_id`, or CheckRunning naming the holder."""
        entity = {
            "PartitionKey": LOCKS,
            "RowKey": tablestore.escape_key(building_id),
            "building": building_id,
            "runId": run_id,
            "claimedAt": now,
            "heartbeatAt": now,
        }
        try:
            with tablestore.storage_errors("claim check lock"):
                self.table.create_entity(entity)
        except Conflict:
            holder = self.lock(building_id)
            raise CheckRunning(str(holder.get("runId") if holder else "?")) from None

    def lock(self, building_id: str) -> Entity | None:
        return tablestore.get_entity(self.table, LOCKS, tablestore.escape_key(building_id))

    def heartbeat(self, building_id: str, run_id: str, now: datetime) -> None:
        current = self.lock(building_id)
        if current is None or current.get("runId") != run_id:
            return
        with contextlib.suppress(NotFound), tablestore.storage_errors("renew check lock"):
            self.table.update_entity(
                {"PartitionKey": LOCKS, "RowKey": current["RowKey"], "heartbeatAt": now},
                mode=UpdateMode.MERGE,
            )

    def release(self, building_id: str, run_id: str) -> None:
        current = self.lock(building_id)
        if current is not None and current.get("runId") == run_id:
            tablestore.delete_if_unchanged(self.table, current)

    def locks(self) -> Iterator[Entity]:
        yield from tablestore.query_all(self.table, "PartitionKey eq @p", {"p": LOCKS})


def _run_from(entity: Entity) -> Run:
    resources = tablestore.from_json_property(entity.get("resourceIds"), [])
    cleanup = tablestore.from_json_property(entity.get("cleanup"), {})
    return Run(
        building_id=str(entity["PartitionKey"]),
        id=str(entity["RowKey"]).split(tablestore.KEY_SEPARATOR, 1)[1],
        status=entity.get("status") or "queued",
        created_at=tablestore.stored_time(entity["createdAt"]),
        actor=str(entity.get("actor") or ""),
        resource_ids=tuple(str(r) for r in resources) if isinstance(resources, list) else (),
        started_at=_time(entity.get("startedAt")),
        finished_at=_time(entity.get("finishedAt")),
        cleanup=cleanup if isinstance(cleanup, dict) else {},
    )


def _time(value: Any) -> datetime | None:
    return tablestore.stored_time(value) if value else None


def _resource_from(entity: Entity) -> ResourceRun:
    steps = tablestore.from_json_property(entity.get("steps"), [])
    return ResourceRun(
        resource_id=str(entity.get("resourceId")),
        steps=tuple(StepResult.from_json(s) for s in steps if isinstance(s, dict)),
        artefacts=Artefacts.from_json(tablestore.from_json_property(entity.get("artefacts"))),
        current=entity.get("current") or None,
        finished=bool(entity.get("finished")),
    )
