"""The reconciliation tick through the Functions host with its default trust period (issue 17):
rooms whose subscriptions are healthy and that were just synced are skipped (no round, no Graph
request); a loss signal makes the next tick reconcile them; lifecycle `missed` from Graph is
recorded and answered by its own round. The policy itself: tests/unit/test_reconcile_policy.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    SYNC_SETTINGS,
    HostLog,
    connect_building_application,
    emulator_stats,
    emulator_subscriptions,
    map_discovered,
    run_function,
    service_env,
    wait_sync_quiet,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)
ROOMS = ("boardroom4a", "huddle4b")


@dataclass
class World:
    stack: Stack
    building: str
    mailboxes: dict[str, str]  # resource → room mailbox


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = {**SYNC_SETTINGS, "BB_RECONCILE_TRUST_MINUTES": "240"}  # the default, not 0
    stack = start_stack(tmp_path_factory.mktemp("reconcile-tick"), extra_settings=settings)
    try:
        with (
            service_env(stack),
            functions_client(stack.endpoints, client_token(stack.endpoints)) as api,
            functions_client(stack.endpoints) as anon,
        ):
            building = f"rt-{uuid.uuid4().hex[:8]}"
            connect_building_application(stack, api, anon, building)
            users = stack.emulator.seed["tenant"]["users"]
            mailboxes = {}
            for nick in ROOMS:
                mail = users[nick]["mail"].lower()
                map_discovered(api, building, nick, lambda c, m=mail: c["mailbox"] == m)
                mailboxes[nick] = mail
            wait_sync_quiet(stack, [building], timeout=30)
            yield World(stack, building, mailboxes)
    finally:
        stack.stop()


def _state(w: World, resource: str) -> dict[str, Any]:
    from shared.storage import clients, tablestore

    found = tablestore.get_entity(clients.table(tablestore.DELTA_STATE), w.building, resource)
    assert found is not None
    return dict(found)


def _tick(w: World) -> tuple[str, dict[str, int], int]:
    """Run the timer through the host: (its log line, rounds per room after, Graph requests)."""
    wait_sync_quiet(w.stack, [w.building], timeout=30, settle=0.3)
    requests = int(emulator_stats(w.stack)["requests"]["total"])
    before = {r: int(_state(w, r)["rounds"]) for r in ROOMS}
    log = HostLog(w.stack)
    log.mark()
    run_function(w.stack, "sync_reconcile")
    said = log.wait_for("sync reconcile:", timeout=30)
    assert said, "the reconcile tick did not run"
    line = said[-1].split("sync reconcile:", 1)[1].strip()
    enqueued = int(line.split()[0])
    assert wait_until(
        lambda: sum(int(_state(w, r)["rounds"]) > before[r] for r in ROOMS) >= enqueued,
        timeout=30,
    )
    wait_sync_quiet(w.stack, [w.building], timeout=30, settle=0.3)
    ran = {r: int(_state(w, r)["rounds"]) - before[r] for r in ROOMS}
    return line, ran, int(emulator_stats(w.stack)["requests"]["total"]) - requests


def test_healthy_rooms_are_skipped_and_cost_no_graph_request(world: World) -> None:
    line, ran, requests = _tick(world)
    assert ran == {r: 0 for r in ROOMS}, line
    assert requests == 0
    assert "2 trusted" in line


def test_a_loss_signal_makes_the_next_tick_reconcile_that_room_only(world: World) -> None:
    from shared.storage import clients
    from shared.sync.deltastate import note_loss

    note_loss(clients.table, world.building, ROOMS[0], "missed", datetime.now(UTC))
    line, ran, requests = _tick(world)
    assert ran == {ROOMS[0]: 1, ROOMS[1]: 0}, line
    assert requests == 1  # one delta request: nothing changed
    line, ran, _ = _tick(world)
    assert ran == {r: 0 for r in ROOMS}, line  # answered: trusted again


def test_lifecycle_missed_from_graph_is_recorded_and_answered_by_its_round(world: World) -> None:
    mailbox = world.mailboxes[ROOMS[1]]
    [sub] = [s for s, body in emulator_subscriptions(world.stack).items()
             if mailbox in str(body.get("resource", "")).lower()]  # fmt: skip
    rounds = int(_state(world, ROOMS[1])["rounds"])
    posted = world.stack.emulator.control.post(
        f"graph/subscriptions/{sub}/lifecycle", json={"event": "missed"}
    )
    assert posted.status_code < 300, posted.text
    assert wait_until(lambda: int(_state(world, ROOMS[1])["rounds"]) > rounds, timeout=30)
    state = _state(world, ROOMS[1])
    assert state["suspectReason"] == "missed"
    assert state["lastStartedAt"] >= state["suspectAt"]
    line, ran, _ = _tick(world)
    assert ran == {r: 0 for r in ROOMS}, line
