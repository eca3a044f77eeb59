"""Convergence: whatever happens to notifications, tokens and Graph, after quiescence plus one
reconciliation the busy blocks in Table Storage equal the calendars in Graph, exactly.

Seeded (`BB_CONVERGENCE_SEEDS`, default 20): each seed makes 10–30 random Outlook changes across
five mapped calendars in five mailboxes (three rooms of an application-mode building; the admin's
own calendar and Olivia's calendar shared with the admin in a delegated-mode building) while the
emulator injects faults: 429s and 5xx on delta requests, dropped, duplicated and delayed
notifications, an expired delta token, a removed subscription (with or without notice), a missed
lifecycle event, and (every fourth seed) the admin's grant revoked, then the building reconnected.
Platform bookings (a platform block + its event carrying our transactionId) are mixed in.

Then: faults off, wait until no request is queued and no round runs, run the reconcile timer
through the host's admin API, wait for its round on every calendar, and compare, per calendar,
every raw busy segment with Graph's calendarView over the tracked window: same events (by the
block id derived from the event id), same times, one block per event, every segment of a block
agreeing, no platform booking imported as an Outlook block.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    SYNC_SETTINGS,
    calendar_view,
    connect_building_application,
    connect_building_delegated,
    emulator_subscriptions,
    graph_token,
    instances,
    map_discovered,
    outlook,
    run_function,
    service_env,
    wait_sync_quiet,
    wait_until,
)

SEEDS = int(os.environ.get("BB_CONVERGENCE_SEEDS", "20"))
pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Calendar:
    building: str
    resource: str
    owner: str  # the mailbox whose calendar it is (UPN); events are created as this user...
    graph_mailbox: str  # ...and read through this mailbox's path
    calendar_id: str  # id in graph_mailbox
    create_in: str | None  # calendarId for the control API (None: the owner's default calendar)
    room: bool


@dataclass
class Tracked:
    """An event a seed may change later: who organised it and where."""

    organizer: str
    event_id: str
    recurring: bool
    calendar: Calendar


@dataclass
class Run:
    stack: Stack
    api: httpx.Client
    anon: httpx.Client
    calendars: list[Calendar]
    users: dict[str, dict[str, Any]]
    app: str
    delegated: str
    day: datetime
    own_bookings: set[str] = field(default_factory=set)
    fired: int = 0  # Graph faults the emulator injected, over all seeds
    reauth_seen: int = 0  # seeds whose revoked grant was noticed (and recovered from)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    settings = {
        **SYNC_SETTINGS,
        # Idle queue listeners look again after 250 ms (not 1 s): quiescence comes sooner.
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.250",
    }
    stack = start_stack(tmp_path_factory.mktemp("convergence"), extra_settings=settings)
    try:
        with (
            service_env(stack),
            functions_client(stack.endpoints, client_token(stack.endpoints)) as api,
            functions_client(stack.endpoints) as anon,
        ):
            yield _world(stack, api, anon)
    finally:
        stack.stop()


def _world(stack: Stack, api: httpx.Client, anon: httpx.Client) -> Run:
    outlook(stack, "POST", "config", json={"attendantDelayMs": [20, 80]})
    users = stack.emulator.seed["tenant"]["users"]
    app, delegated = f"cva-{uuid.uuid4().hex[:8]}", f"cvd-{uuid.uuid4().hex[:8]}"
    connect_building_application(stack, api, anon, app)
    calendars: list[Calendar] = []
    for nick in ("boardroom4a", "huddle4b", "focus3c"):
        mail = users[nick]["mail"].lower()
        found = map_discovered(api, app, nick, lambda c, m=mail: c["mailbox"] == m)
        calendars.append(Calendar(app, nick, mail, mail, str(found["id"]), None, True))
    admin = users["admin"]["userPrincipalName"].lower()
    connect_building_delegated(stack, api, anon, delegated, admin)
    own = map_discovered(
        api, delegated, "own", lambda c: c["kind"] == "personal" and c["name"] == "Board Room 4A"
    )
    calendars.append(
        Calendar(delegated, "own", admin, admin, str(own["id"]), str(own["id"]), False)
    )
    olivia = users["olivia"]["mail"].lower()
    shared = map_discovered(
        api, delegated, "shared", lambda c: c["kind"] == "shared" and c["mailbox"] == olivia
    )
    calendars.append(Calendar(delegated, "shared", olivia, admin, str(shared["id"]), None, False))
    wait_sync_quiet(stack, [app, delegated], timeout=30)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return Run(stack, api, anon, calendars, users, app, delegated, day)


# ---------------------------------------------------------------- random changes


def _times(rng: random.Random, day: datetime) -> tuple[datetime, datetime]:
    start = day + timedelta(
        days=rng.randrange(14), hours=rng.randrange(7, 19), minutes=rng.choice((0, 30))
    )
    return start, start + timedelta(minutes=rng.choice((30, 60, 90)))


def _z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(subject: str, start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        **extra,
    }


class Seed:
    def __init__(self, r: Run, seed: int) -> None:
        self.r = r
        self.rng = random.Random(seed)
        self.seed = seed
        self.live: list[Tracked] = []
        self.token = graph_token(r.stack)

    def create(self) -> None:
        rng, r = self.rng, self.r
        cal = rng.choice(r.calendars)
        start, end = _times(rng, r.day)
        body = _body(f"s{self.seed}-{uuid.uuid4().hex[:6]}", start, end,
                     showAs=rng.choice(("busy", "busy", "busy", "tentative", "free")))  # fmt: skip
        recurring = rng.random() < 0.3
        if recurring:
            body["recurrence"] = {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": start.strftime("%Y-%m-%d"),
                          "numberOfOccurrences": rng.randrange(2, 5)},
            }  # fmt: skip
        organizer = cal.owner
        if cal.room and rng.random() < 0.6:
            # The usual way: a person invites the room; the room's attendant books it.
            organizer = r.users[rng.choice(("emma", "liam"))]["mail"].lower()
            body["attendees"] = [{"type": "resource", "emailAddress": {"address": cal.owner}}]
        elif cal.create_in:
            body["calendarId"] = cal.create_in
        created = outlook(r.stack, "POST", f"users/{organizer}/events", json=body)
        self.live.append(Tracked(organizer, str(created["id"]), recurring, cal))

    def own_booking(self) -> None:
        """A platform booking through our API: its block, and its event written through to the
        calendar with our transactionId (the sync worker must recognise it)."""
        rng, r = self.rng, self.r
        cal = rng.choice(r.calendars)
        start, end = _times(rng, r.day)
        response = r.api.post(
            f"buildings/{cal.building}/bookings",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"resourceId": cal.resource, "start": _z(start), "end": _z(end),
                  "title": "Portal booking",
                  "booker": {"email": r.users["emma"]["mail"], "name": "Emma"}},
        )  # fmt: skip
        if response.status_code == 409:
            return  # the slot is taken (in the platform or in Outlook): nothing was booked
        assert response.status_code == 201, response.text
        r.own_bookings.add(str(response.json()["id"]))

    def change(self) -> None:
        if not self.live:
            return self.create()
        rng, r = self.rng, self.r
        event = rng.choice(self.live)
        path = f"users/{event.organizer}/events/{event.event_id}"
        roll = rng.random()
        try:
            if roll < 0.35:
                start, end = _times(rng, r.day)
                moved = _body("moved", start, end)
                outlook(r.stack, "PATCH", path, json={"start": moved["start"], "end": moved["end"]})
            elif roll < 0.5:
                outlook(
                    r.stack, "PATCH", path, json={"showAs": rng.choice(("free", "busy", "oof"))}
                )
            elif roll < 0.65 and event.recurring:
                found = instances(r.stack, self.token, event.organizer, event.event_id, r.day,
                                  r.day + timedelta(days=20))  # fmt: skip
                if found:
                    occurrence = rng.choice(found)["id"]
                    outlook(r.stack, "DELETE", f"users/{event.organizer}/events/{occurrence}")
            elif roll < 0.8 and event.organizer != event.calendar.owner:
                outlook(r.stack, "POST", f"{path}/cancel", json={})
                self.live.remove(event)
            else:
                outlook(r.stack, "DELETE", path)
                self.live.remove(event)
        except AssertionError:
            # The attendant may have declined (the room copy never existed), or a move crossed an
            # occurrence boundary: Outlook refused, nothing changed. Not our business.
            self.live = [t for t in self.live if t is not event]

    # --------------------------------------------------------- faults

    def faults_on(self) -> float:
        """Turn the seed's faults on; returns the notification delay (seconds)."""
        rng = self.rng
        rules = [
            {"method": "GET", "path": "re:.*/calendarView/delta.*", "status": 429,
             "rate": rng.uniform(0.1, 0.35), "retryAfter": 1, "code": "TooManyRequests"},
            {"method": "GET", "path": "re:.*/calendarView/delta.*",
             "status": rng.choice((500, 503, 504)), "rate": rng.uniform(0.1, 0.3),
             "code": "UnknownError"},
        ]  # fmt: skip
        delay_ms = rng.choice((0, 200, 500))
        outlook(self.r.stack, "POST", "faults", json={
            "rules": rules,
            "notifications": {"dropRate": rng.uniform(0.1, 0.4),
                              "duplicateRate": rng.uniform(0.1, 0.5), "delayMs": delay_ms},
        })  # fmt: skip
        return delay_ms / 1000

    def expire_delta(self) -> None:
        cal = self.rng.choice(self.r.calendars)
        mode = self.rng.choice(("gone", "syncStateNotFound"))
        outlook(
            self.r.stack, "POST", "delta/expire", json={"mode": mode, "user": cal.graph_mailbox}
        )

    def remove_subscription(self) -> None:
        subs = list(emulator_subscriptions(self.r.stack))
        if subs:
            notify = "true" if self.rng.random() < 0.5 else "false"
            self.r.stack.emulator.control.delete(
                f"graph/subscriptions/{self.rng.choice(subs)}", params={"notify": notify}
            )

    def missed(self) -> None:
        subs = list(emulator_subscriptions(self.r.stack))
        if subs:
            self.r.stack.emulator.control.post(
                f"graph/subscriptions/{self.rng.choice(subs)}/lifecycle", json={"event": "missed"}
            )

    def revoke_and_reconnect(self, changes: int) -> None:
        r = self.r
        admin = r.users["admin"]
        outlook(r.stack, "POST", "grants/revoke",
                json={"tenantId": r.stack.endpoints["tenantId"], "user": admin["id"]})  # fmt: skip
        began = time.monotonic()
        for _ in range(changes):
            self.create() if self.rng.random() < 0.5 else self.change()

        def noticed() -> bool:
            shown = r.api.get(f"buildings/{r.delegated}/resources/shared").json()["sync"]
            return bool(shown["status"] == "error" and shown["reason"] == "reauth_required")

        # The polled calendar's next round (≤ BB_POLL_MAX_SECONDS) meets the revoked grant.
        if wait_until(noticed, timeout=10):
            r.reauth_seen += 1
        # Tokens issued in the revocation's second would still count as revoked.
        time.sleep(max(0.0, 1.2 - (time.monotonic() - began)))  # the Entra emulator's real clock
        connect_building_delegated(r.stack, r.api, r.anon, r.delegated, admin["userPrincipalName"])


# ---------------------------------------------------------------- the truth and the comparison


def _expected(
    r: Run, token: str, cal: Calendar, start: datetime, end: datetime
) -> dict[str, tuple[datetime, datetime]]:
    from shared.availability.busy import booking_id_from_transaction
    from shared.core.times import parse_graph_time
    from shared.sync.plan import outlook_block_id

    found: dict[str, tuple[datetime, datetime]] = {}
    for item in calendar_view(r.stack, token, cal.graph_mailbox, cal.calendar_id, start, end):
        if item.get("isCancelled") or item.get("showAs") == "free":
            continue
        if booking_id_from_transaction(item.get("transactionId")) in r.own_bookings:
            continue
        s, e = parse_graph_time(item["start"]), parse_graph_time(item["end"])
        if s < e:
            found[outlook_block_id(cal.owner, cal.calendar_id, item["id"])] = (s, e)
    return found


def _segments(building: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every raw busy segment of the building in the window (not de-duplicated by the store)."""
    from shared.availability.busy import day_partition
    from shared.storage import clients, tablestore

    table = clients.table(tablestore.BUSY)
    days = [(start + timedelta(days=i)).date() for i in range((end - start).days + 1)]

    def one(day: Any) -> list[dict[str, Any]]:
        rows = tablestore.query_all(
            table, "PartitionKey eq @p", {"p": day_partition(building, day)}
        )
        return [dict(x) for x in rows if str(x["RowKey"]).startswith("r|")]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [row for rows in pool.map(one, days) for row in rows]


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(value.isoformat()).astimezone(UTC) if isinstance(value, datetime) \
        else datetime.fromisoformat(str(value)).astimezone(UTC)  # fmt: skip


def _check(r: Run) -> None:
    from shared.storage import clients, tablestore

    token = graph_token(r.stack)
    raw: dict[str, list[dict[str, Any]]] = {}
    for cal in r.calendars:
        state = tablestore.get_entity(
            clients.table(tablestore.DELTA_STATE), cal.building, cal.resource
        )
        assert state is not None, cal
        start, end = _when(state["windowStart"]), _when(state["windowEnd"])
        if cal.building not in raw:
            raw[cal.building] = _segments(cal.building, start, end)
        expected = _expected(r, token, cal, start, end)
        blocks: dict[str, set[tuple[datetime, datetime]]] = defaultdict(set)
        platform: set[str] = set()
        for seg in raw[cal.building]:
            if seg["resourceId"] != cal.resource:
                continue
            if seg["source"] == "platform":
                platform.add(seg["blockId"])
                continue
            s, e = _when(seg["start"]), _when(seg["end"])
            if s < end and e > start:
                blocks[seg["blockId"]].add((s, e))
        stale = {b: v for b, v in blocks.items() if len(v) > 1}
        assert not stale, f"{cal.resource}: blocks with segments of several versions: {stale}"
        actual = {b: next(iter(v)) for b, v in blocks.items()}
        missing = {b: t for b, t in expected.items() if actual.get(b) != t}
        extra = {b: t for b, t in actual.items() if expected.get(b) != t}
        assert not missing and not extra, (
            f"{cal.resource}: Graph has {len(expected)}, storage {len(actual)}; "
            f"missing or different {missing}; extra or different {extra}"
        )
        imported = {b for b in actual if b in r.own_bookings}
        assert not imported
    # Every mapping is healthy again (a revoked grant was recovered from by reconnecting).
    for building in (r.app, r.delegated):
        for resource in r.api.get(f"buildings/{building}/resources").json()["value"]:
            assert resource["sync"]["status"] == "synced", resource
    # Every platform booking still stands, as a platform block only.
    all_platform = {
        seg["blockId"] for rows in raw.values() for seg in rows if seg["source"] == "platform"
    }
    assert r.own_bookings <= all_platform


def _rounds(r: Run) -> dict[tuple[str, str], int]:
    from shared.storage import clients, tablestore

    table = clients.table(tablestore.DELTA_STATE)
    out = {}
    for cal in r.calendars:
        state = tablestore.get_entity(table, cal.building, cal.resource)
        out[(cal.building, cal.resource)] = int(state["rounds"]) if state else 0
    return out


# ---------------------------------------------------------------- the test


@pytest.mark.parametrize("seed", range(SEEDS))
def test_converges_after_faults_and_one_reconciliation(run: Run, seed: int) -> None:
    s = Seed(run, seed)
    rng = s.rng
    delay = s.faults_on()
    changes = rng.randrange(10, 31)
    events = {
        rng.randrange(changes): s.expire_delta,
        rng.randrange(changes): s.remove_subscription,
        rng.randrange(changes): s.missed,
    }
    for i in range(changes):
        if i in events:
            events[i]()
        roll = rng.random()
        if roll < 0.45:
            s.create()
        elif roll < 0.55:
            s.own_booking()
        else:
            s.change()
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.05, 0.3))  # spread some changes over several rounds
    if seed % 4 == 3:
        s.revoke_and_reconnect(rng.randrange(2, 6))
    fired = outlook(run.stack, "GET", "faults")["rules"]
    run.fired += sum(int(rule["fired"]) for rule in fired)
    outlook(run.stack, "DELETE", "faults")
    time.sleep(delay + 0.1)  # delayed notifications land
    wait_sync_quiet(run.stack, [run.app, run.delegated], timeout=60, settle=0.3)
    before = _rounds(run)
    run_function(run.stack, "sync_reconcile")
    assert wait_until(lambda: all(n > before[k] for k, n in _rounds(run).items()), timeout=30), (
        "the reconciliation did not run a round on every calendar"
    )
    wait_sync_quiet(run.stack, [run.app, run.delegated], timeout=30, settle=0.3)
    _check(run)


def test_the_faults_really_happened(run: Run) -> None:
    """The seeds above are only worth something if the emulator really misbehaved."""
    from tests.e2e.sync_fixtures import emulator_stats

    if SEEDS < 4:
        pytest.skip("needs the revocation seed")
    stats = emulator_stats(run.stack)["notifications"]
    assert run.fired > 0
    assert run.own_bookings  # platform bookings were written through (and never imported)
    assert stats["dropped"] > 0 and stats["duplicated"] > 0
    assert stats["lifecycle"].get("missed", 0) > 0
    assert run.reauth_seen == SEEDS // 4
