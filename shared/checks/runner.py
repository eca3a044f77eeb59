"""Go-live check runs: start one (`POST /buildings/{b}/checks` → 202), run it (the `checks` queue
worker), read them (`GET …/checks[/{id}]`).

A run: the building's lock is taken (one run per building: 409 `check_running` naming the
holder), the run is recorded `queued` and put on the `checks` queue, and the POST answers at once.
The queue worker marks it `running`, checks each resource (at most `concurrency` at a time; the
steps and their order are in shared/checks/model.py, their code in shared/checks/steps.py),
writing each resource's steps as they complete (a caller polling GET sees them live) and renewing
the lock's heartbeat, then cleans up each resource's test artefacts, records the outcome (with the
clean-up's verification) and releases the lock. If clean-up left something, the lock stays and
the sweeper (shared/checks/sweeper.py) finishes the job. Runs are audited (`check.start`,
`check.run`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from shared.checks.deps import LIST_MAX, CheckDeps
from shared.checks.model import (
    STEPS,
    WRITE_STEPS,
    Artefacts,
    CheckOut,
    ResourceRun,
    Run,
    StepResult,
    blocked_by,
    failed,
    run_status,
    skipped,
)
from shared.checks.steps import STEP_FUNCTIONS, Ctx, cleanup, reason_of
from shared.core.errors import (
    BookingBridgeError,
    FieldError,
    NotFound,
    Unprocessable,
    ValidationFailed,
)
from shared.core.paging import Listed, top_of
from shared.core.validate import check_building, check_path, valid_id
from shared.graph.audit import AuditEntry
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.webhooks import events as webhook_events

logger = logging.getLogger(__name__)

QUEUE = "checks"
MAX_RESOURCES = 100
_RUN_ID_LENGTH = 21


# ---------------------------------------------------------------- the queue message


def encode_message(building: str, run_id: str) -> str:
    return json.dumps({"building": building, "runId": run_id}, separators=(",", ":"))


def decode_message(text: str) -> tuple[str, str]:
    try:
        data = json.loads(text)
        building, run_id = str(data["building"]), str(data["runId"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed([FieldError("message", "not a check request")]) from exc
    if not valid_id(building) or not _valid_run_id(run_id):
        raise ValidationFailed([FieldError("message", "not a check request")])
    return building, run_id


def _valid_run_id(run_id: str) -> bool:
    return len(run_id) == _RUN_ID_LENGTH and all(c in "0123456789abcdef" for c in run_id)


# ---------------------------------------------------------------- start, read


def _mapped(deps: CheckDeps, building: str) -> dict[str, MappedCalendar]:
    entities = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building}
    )
    found = (MappedCalendar.from_entity(e) for e in entities)
    return {c.resource_id: c for c in found if c is not None}


def _requested(body: Mapping[str, Any], mapped: Mapping[str, MappedCalendar]) -> list[str]:
    unknown = sorted(set(body) - {"resourceIds"})
    if unknown:
        raise ValidationFailed([FieldError(name, "is not a field of a check") for name in unknown])
    raw = body.get("resourceIds")
    if raw is None:
        if not mapped:
            raise Unprocessable(
                "The building has no mapped resource to check", reason="no_mapped_resources"
            )
        return sorted(mapped)
    if not isinstance(raw, list) or not raw or len(raw) > MAX_RESOURCES:
        raise ValidationFailed(
            [FieldError("resourceIds", f"must be a list of 1–{MAX_RESOURCES} resource ids")]
        )
    errors = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not valid_id(item):
            errors.append(FieldError(f"resourceIds[{i}]", "must be a resource id"))
        elif item not in mapped:
            errors.append(
                FieldError(f"resourceIds[{i}]", "is not a mapped resource of this building")
            )
    if errors:
        raise ValidationFailed(errors)
    return sorted(set(raw))


def start_check(deps: CheckDeps, building: str, body: Mapping[str, Any], *, actor: str) -> CheckOut:
    """POST: lock, record, enqueue; the queue worker runs it. 409 if one is running."""
    check_building(building)
    resources = _requested(body, _mapped(deps, building))
    from shared.checks.store import new_run_id

    now = deps.now()
    run = Run(building, new_run_id(now), "queued", now, actor, tuple(resources))
    deps.store.claim(building, run.id, now)
    try:
        deps.store.put_run(run)
        deps.enqueue_run(building, run.id)
    except BaseException:
        deps.store.delete_run(building, run.id)
        deps.store.release(building, run.id)
        raise
    _audit(deps, run, "check.start", f"queued; resources {', '.join(resources)}", 202)
    return run.to_api([ResourceRun(r) for r in resources])


def get_check(deps: CheckDeps, building: str, run_id: str) -> CheckOut:
    check_path(building=building)
    run = deps.store.get_run(building, run_id) if _valid_run_id(run_id) else None
    if run is None:
        raise NotFound("No such check in this building", reason="check_not_found")
    stored = {r.resource_id: r for r in deps.store.resources(building, run_id)}
    return run.to_api([stored.get(r, ResourceRun(r)) for r in run.resource_ids])


def list_checks(deps: CheckDeps, building: str, params: Mapping[str, str]) -> Listed[CheckOut]:
    """One page of the building's runs, newest first (`limit`: the older name of `top`)."""
    check_building(building)
    top = top_of(params, default=deps.config.list_limit, maximum=LIST_MAX, alias="limit")
    runs, token = deps.store.list_runs(building, top, params.get("continuationToken"))
    return Listed([r.to_api() for r in runs], token)


# ---------------------------------------------------------------- run


def announce_completed(deps: CheckDeps, run: Run) -> None:
    """check.completed, handed over before the finished run is stored (its check waits for it)."""
    from shared.checks.store import TABLE as CHECKS_TABLE
    from shared.checks.store import run_row

    deps.emit(run.building_id, [webhook_events.check_completed(
        building=run.building_id, check_id=run.id, status=run.status, table=CHECKS_TABLE,
        row=run_row(run.id),
    )])  # fmt: skip


def run_check(deps: CheckDeps, building: str, run_id: str) -> str:
    """The queue worker: run a queued check to its end; returns its status (for the log)."""
    run = deps.store.get_run(building, run_id)
    if run is None or run.status != "queued":
        return f"not queued ({run.status if run else 'gone'})"
    running = replace(run, status="running", started_at=deps.now())
    deps.store.put_run(running)
    deps.store.heartbeat(building, run_id, deps.now())
    connection = deps.connections.get(building)
    mapped = _mapped(deps, building)

    def one(resource_id: str) -> tuple[ResourceRun, list[str]]:
        return _run_resource(deps, running, resource_id, mapped.get(resource_id), connection)

    workers = max(1, min(deps.config.concurrency, len(run.resource_ids)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, running.resource_ids))
    results = [r for r, _ in outcomes]
    leftovers = [f"{r.resource_id}: {item}" for r, left in outcomes for item in left]
    run = replace(
        running,
        status=run_status(results),
        finished_at=deps.now(),
        cleanup={"status": "clean" if not leftovers else "leftovers", "leftovers": leftovers},
    )
    announce_completed(deps, run)
    deps.store.put_run(run)
    failed_steps = [
        f"{r.resource_id}/{s.name}:{s.reason}"
        for r in results
        for s in r.steps
        if s.status == "failed"
    ]
    _audit(deps, run, "check.run",
           f"{run.status}; failed {', '.join(failed_steps) or 'none'}; cleanup {run.cleanup['status']}",
           200 if run.status == "passed" else 500)  # fmt: skip
    if not leftovers:
        deps.store.release(building, run_id)
    return run.status


def _run_resource(
    deps: CheckDeps,
    run: Run,
    resource_id: str,
    calendar: MappedCalendar | None,
    connection: Any,
) -> tuple[ResourceRun, list[str]]:
    building = run.building_id
    state = ResourceRun(resource_id)
    if calendar is None:  # unmapped since the POST
        now = deps.now()
        facts = {"building": building, "resource": resource_id, "code": "not_mapped"}
        steps = (
            failed("connection", now, "calendar_not_found", facts),
            *(skipped(n, now, "depends_on_failed", {"after": "connection"}) for n in STEPS[1:]),
        )
        state = ResourceRun(resource_id, steps, finished=True)
        deps.store.put_resource(building, run.id, state)
        return state, []
    entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building, resource_id) or {}

    def record(artefacts: Artefacts) -> None:
        nonlocal state
        state = replace(state, artefacts=artefacts)
        deps.store.put_resource(building, run.id, state)

    ctx = Ctx(deps, run.id, building, entity, calendar, connection, record)
    done: dict[str, StepResult] = {}
    for name in STEPS:
        state = replace(state, current=name)
        deps.store.put_resource(building, run.id, state)
        after = blocked_by(name, done)
        if name in WRITE_STEPS and ctx.read_only:  # before `after`: cancel follows a skipped step
            result = skipped(name, deps.now(), "read_only_connection", ctx.facts)
        elif after is not None:
            result = skipped(name, deps.now(), "depends_on_failed", {"after": after})
        else:
            result = _step(ctx, name)
        done[name] = result
        state = replace(state, steps=(*state.steps, result))
        deps.store.put_resource(building, run.id, state)
        deps.store.heartbeat(building, run.id, deps.now())
    # Not in a `finally`: a process that dies mid-run leaves this to the sweeper, as a crash would.
    try:
        left = cleanup(ctx)
    except BookingBridgeError as err:
        logger.warning("check %s/%s: clean-up failed: %s", run.id, resource_id, err.log_detail)
        left = [f"clean-up failed ({err.reason or type(err).__name__})"]
    state = replace(state, current=None, finished=True, artefacts=ctx.artefacts)
    deps.store.put_resource(building, run.id, state)
    return state, left


def _step(ctx: Ctx, name: str) -> StepResult:
    started = ctx.deps.now()
    try:
        return STEP_FUNCTIONS[name](ctx)  # type: ignore[index]
    except Exception as err:  # a step never takes the run down: it fails, explained
        if not isinstance(err, BookingBridgeError):
            logger.exception("check %s/%s: step %s failed", ctx.run_id, ctx.resource_id, name)
        reason, facts = reason_of(err, ctx, writing=name in WRITE_STEPS)
        return failed(name, started, reason, {**ctx.facts, **facts})  # type: ignore[arg-type]


def _audit(deps: CheckDeps, run: Run, operation: str, result: str, status: int) -> None:
    deps.audit(
        AuditEntry(
            time=deps.now(),
            actor=run.actor,
            building=run.building_id,
            connection="",
            operation=operation,
            mailbox=None,
            calendar=None,
            result=f"run {run.id}: {result}",
            status=status,
            request_id=None,
        )
    )


def abandon_resources(deps: CheckDeps, run: Run) -> list[str]:
    """The sweeper's clean-up of a dead run: every resource's artefacts, its unfinished steps
    marked `abandoned`; returns what is still left."""
    connection = deps.connections.get(run.building_id)
    mapped = _mapped(deps, run.building_id)
    stored = {r.resource_id: r for r in deps.store.resources(run.building_id, run.id)}
    left: list[str] = []
    for resource_id in run.resource_ids:
        state = stored.get(resource_id, ResourceRun(resource_id))
        calendar = mapped.get(resource_id)
        if calendar is not None:
            entity = (
                tablestore.get_entity(
                    deps.tables(tablestore.RESOURCES), run.building_id, resource_id
                )
                or {}
            )

            def record(artefacts: Artefacts, _id: str = resource_id) -> None:
                deps.store.put_resource(run.building_id, run.id,
                                        replace(stored.get(_id, ResourceRun(_id)), artefacts=artefacts))  # fmt: skip

            ctx = Ctx(deps, run.id, run.building_id, entity, calendar, connection, record,
                      artefacts=state.artefacts)  # fmt: skip
            try:
                left.extend(f"{resource_id}: {item}" for item in cleanup(ctx))
            except BookingBridgeError as err:
                left.append(f"{resource_id}: clean-up failed ({err.reason or type(err).__name__})")
        if not state.finished:
            names = {s.name for s in state.steps}
            missing = [n for n in STEPS if n not in names]
            now = deps.now()
            extra = [
                failed(n, now, "abandoned", {}) if i == 0 else skipped(n, now, "abandoned", {})
                for i, n in enumerate(missing)
            ]
            state = replace(state, steps=(*state.steps, *extra), current=None, finished=True)
            deps.store.put_resource(run.building_id, run.id, state)
    return left
