"""A portal backend's whole flow against BookingBridge, written from README.md and docs/API.md only.

    python examples/portal_client.py [--endpoints .devstack/endpoints.json] [--building ID]

It needs a running `make run` and a building already connected to Microsoft 365 (the console, or
`make demo`, connects the demo building). Then, as a portal would: get a token (client credentials,
docs/API.md "Getting a token"), list the building's resources, create one, map it to a room
calendar, book it, read availability, move the booking (If-Match with its ETag), cancel it, list
the bookings, and read sync health. Plain httpx; nothing from this repository is imported.
Exit status 0 when every step answered as API.md says.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

RESOURCE = "portal-example-room"
ZONE = "Europe/Amsterdam"


class Failed(Exception):
    """An answer other than the one API.md promises."""


def expect(response: httpx.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise Failed(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json() if response.content else None


def get_token(e: dict[str, Any]) -> str:
    """Client credentials for the portal client of endpoints.json (Portal.Service)."""
    response = httpx.post(
        f"{e['authorityHost']}/{e['tenantId']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": e["portal"]["clientId"],
            "client_secret": e["portal"]["clientSecret"],
            "scope": e["portal"]["scope"],
        },
        verify=e["caBundle"],  # the local CA signs the emulator's certificate
        trust_env=False,
    )
    return str(expect(response, 200)["access_token"])


def items(api: httpx.Client, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a list route: `{"value": [...], "nextLink": <url or null>}`, page by page."""
    body = expect(api.get(path, params=params), 200)
    while True:
        yield from body["value"]
        if not body.get("nextLink"):
            return
        body = expect(api.get(body["nextLink"]), 200)


def say(text: str) -> None:
    print(text, flush=True)


def at(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone)


def run(e: dict[str, Any], building: str) -> None:
    api = httpx.Client(
        base_url=e["functionsBaseUrl"] + "/",
        headers={"Authorization": f"Bearer {get_token(e)}"},
        trust_env=False,
        timeout=30,
    )
    b = f"buildings/{building}"
    say(f"token: ok; health: {expect(api.get('health'), 200)['status']}")

    listed = list(items(api, f"{b}/resources"))
    say(f"resources before: {[r['id'] for r in listed]}")
    created = api.put(
        f"{b}/resources/{RESOURCE}",
        json={"name": "Portal example room", "kind": "room", "timeZone": ZONE, "capacity": 6},
    )
    resource = expect(created, 200, 201)
    say(f"resource {RESOURCE}: {created.status_code}, sync {resource['sync']['status']}")

    if resource["sync"]["status"] in ("not_synced", "error"):
        for calendar in (
            c for c in items(api, f"{b}/calendars") if c["kind"] == "room" and c["canEdit"]
        ):
            mapped = api.put(
                f"{b}/resources/{RESOURCE}/mapping",
                json={"calendarId": calendar["id"], "mailbox": calendar["mailbox"]},
            )
            if mapped.status_code == 409:  # mapped to another resource already: try the next
                continue
            expect(mapped, 200)
            say(f"mapped to {calendar['name']} <{calendar['mailbox']}>")
            break
        else:
            raise Failed("no room calendar left to map")

    zone = ZoneInfo(resource["timeZone"])
    tomorrow = (datetime.now(zone) + timedelta(days=1)).date()
    booking = None
    for hour in range(8, 17):  # the first free hour tomorrow (a rerun finds its last one taken)
        answer = api.post(
            f"{b}/bookings",
            headers={"Idempotency-Key": str(uuid.uuid4())},
            json={
                "resourceId": RESOURCE,
                "start": at(tomorrow, hour, zone).isoformat(),
                "end": at(tomorrow, hour + 1, zone).isoformat(),
                "title": "Portal example",
                "booker": {"email": "alex@portal.example", "name": "Alex Portal"},
            },
        )
        if answer.status_code == 409:
            continue
        booking = expect(answer, 201)
        break
    if booking is None:
        raise Failed("no free hour tomorrow")
    say(f"booked {booking['id']}: {booking['start']} {booking['status']}/{booking['syncState']}")

    window = {
        "from": at(tomorrow, 7, zone).isoformat(),
        "to": at(tomorrow, 19, zone).isoformat(),
    }
    availability = expect(
        api.get(f"{b}/availability", params={**window, "resourceId": RESOURCE, "slotMinutes": 30}),
        200,
    )
    [mine] = availability["resources"]
    if not any(x.get("bookingId") == booking["id"] for x in mine["busy"]):
        raise Failed(f"the booking is not busy in availability: {mine['busy']}")
    say(f"availability: {len(mine['busy'])} busy, free {mine['free'][:2]}")

    path = f"{b}/bookings/{booking['id']}"
    read = api.get(path)
    expect(read, 200)
    start = datetime.fromisoformat(booking["start"].replace("Z", "+00:00"))
    moved = api.patch(
        path,
        json={
            "start": (start + timedelta(hours=1)).isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        },
        headers={"If-Match": read.headers["ETag"]},
    )
    if moved.status_code == 409:  # the next hour is taken: a new title instead
        moved = api.patch(path, json={"title": "Portal example (moved)"},
                          headers={"If-Match": read.headers["ETag"]})  # fmt: skip
    after = expect(moved, 200)
    say(f"moved: {after['start']} {after['syncState']}")
    stale = api.patch(path, json={"title": "stale"}, headers={"If-Match": read.headers["ETag"]})
    if stale.status_code != 412:  # the ETag read before the move is out of date now
        raise Failed(f"a stale If-Match answered {stale.status_code}")
    say(f"stale If-Match: 412 {expect(stale, 412)['reason']}")

    current = api.get(path).headers["ETag"]
    expect(api.delete(path, headers={"If-Match": current}), 204)
    say(f"cancelled: {expect(api.get(path), 200)['status']}")

    bookings = list(items(api, f"{b}/bookings", **window, resourceId=RESOURCE))
    confirmed = [x["id"] for x in bookings if x.get("status", "confirmed") == "confirmed"]
    if booking["id"] in confirmed:
        raise Failed("the cancelled booking is still listed as confirmed")
    say(f"bookings tomorrow: {len(bookings)} listed, ours not among the confirmed")

    health = expect(api.get(f"{b}/sync"), 200)
    say(f"sync health: {json.dumps(health)[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=Path, default=Path(".devstack/endpoints.json"))
    parser.add_argument("--building", help="default: the demo building of endpoints.json")
    args = parser.parse_args(argv)
    e = json.loads(args.endpoints.read_text())
    try:
        run(e, args.building or e["buildingId"])
    except Failed as failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
