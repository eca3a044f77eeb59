"""`make demo`: the whole story against a running `make run`, printing each step and its result.

Connect the demo building to the demo tenant (application consent, auto-consented by the demo
admin), register resources, map a room, set up companies and users, book in the platform, book
directly in Outlook as an employee, watch it sync back with its attribution, read availability,
cancel. Uses only the public HTTP API (as a portal would) and the emulator's control API (as an
Outlook user would).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx

from devstack.demo_check import go_live
from devstack.procs import REPO_ROOT
from devstack.stack import DEMO_BUILDING_BODY

ENDPOINTS = REPO_ROOT / ".devstack" / "endpoints.json"
SYNC_WAIT_S = 20.0
TIME_ZONE = DEMO_BUILDING_BODY[
    "timeZone"
]  # the building's and its resources' (step 3): "tomorrow" is its day
DAY_HOURS = (7, 19)  # the demo books between 07:00 and 19:00 in the building's time zone
MEETING = timedelta(hours=1)  # what the demo books, in the platform and in Outlook
SEARCH_DAYS = 7  # tomorrow first; the days after once repeated runs have filled it up


PRIVACY = """\
   Privacy mode: the building's setting storeExternalSubjects is off (the default), so
   BookingBridge keeps no subject of an Outlook booking: its title is null. Its userEmail is
   set only when the booker is a registered user; Emma is not, so she is attributed to
   Contoso by her email domain. PUT /settings with storeExternalSubjects: true keeps the
   subjects of Outlook bookings synced from then on."""


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show(label: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    print(f"   {label}: {text}" if "\n" not in text else f"   {label}:\n" + _indent(text))


def _indent(text: str) -> str:
    return "\n".join("     " + line for line in text.splitlines())


def check(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in expected:
        print(f"   !! {response.request.method} {response.request.url} -> {response.status_code}")
        print(_indent(response.text[:2000]))
        raise SystemExit(1)
    if response.headers.get("content-type", "").startswith(
        ("application/json", "application/problem")
    ):
        return response.json()
    return response.text


def portal_token(e: Mapping[str, Any]) -> str:
    response = httpx.post(
        f"{e['authorityHost']}/{e['tenantId']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": e["portal"]["clientId"],
            "client_secret": e["portal"]["clientSecret"],
            "scope": e["portal"]["scope"],
        },
        verify=e["caBundle"],
        trust_env=False,
    )
    return str(check(response, 200)["access_token"])


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, wall_time(hour), tzinfo=zone)


def local(value: str | datetime, zone: ZoneInfo) -> str:
    """A time as the building's people read it: `Sat 05 Dec 10:00` on the building's clock."""
    instant = _instant(value) if isinstance(value, str) else value
    return f"{instant.astimezone(zone):%a %d %b %H:%M}"


def span(item: Mapping[str, Any], zone: ZoneInfo) -> str:
    return f"{local(item['start'], zone)}–{local(item['end'], zone)[-5:]}"


def free_windows(
    free: Sequence[Mapping[str, str]], length: timedelta, not_before: datetime, zone: ZoneInfo
) -> list[datetime]:
    """Starts (UTC) of non-overlapping `length` windows that lie wholly inside the free runs, on
    full hours of `zone`, within DAY_HOURS of one local day, not before `not_before`, earliest
    first.

    The availability route answers free time as maximal runs (one entry per contiguous free
    interval, docs/API.md), not one entry per slot: a free morning is one entry.
    """
    starts: list[datetime] = []
    for run in free:
        start, end = max(_instant(run["start"]), not_before), _instant(run["end"])
        local = start.astimezone(zone)
        hour = local.replace(minute=0, second=0, microsecond=0)
        t = hour.astimezone(UTC) + (timedelta(hours=1) if hour < local else timedelta(0))
        while t + length <= end:
            day = t.astimezone(zone).date()
            opens, closes = (_local(day, h, zone).astimezone(UTC) for h in DAY_HOURS)
            if opens <= t and t + length <= closes and (not starts or t >= starts[-1] + length):
                starts.append(t)
            t += timedelta(hours=1)
    return starts


def main(endpoints: Path | Mapping[str, Any] | None = None, *, now: datetime | None = None) -> int:
    """The demo against the stack in `endpoints` (a file or its content; default
    .devstack/endpoints.json), as if it were `now` (default: this machine's clock, which is the
    clock the Functions host of `make run` uses for "now", so slots the demo picks are future to
    it; tests/e2e/test_demo.py sets it to awkward times of day)."""
    if endpoints is None or isinstance(endpoints, Path):
        path = endpoints or ENDPOINTS
        if not path.exists():
            print(f"no {path}: start `make run` first (in another terminal)")
            return 1
        e: Mapping[str, Any] = json.loads(path.read_text())
    else:
        e = endpoints
    now = (now or datetime.now(UTC)).astimezone(UTC)
    building = e["buildingId"]
    api = httpx.Client(
        base_url=e["functionsBaseUrl"] + "/",
        headers={"Authorization": f"Bearer {portal_token(e)}"},
        trust_env=False,
        timeout=30,
    )
    control = httpx.Client(
        base_url=e["emulatorBaseUrl"] + "/_emulator/", verify=e["caBundle"], trust_env=False
    )
    b = f"buildings/{building}"

    step("1. Health of the local stack, and the building (its name, time zone, business hours)")
    show("GET /api/health", check(api.get("health"), 200))
    show(f"PUT /api/{b}", check(api.put(b, json=DEMO_BUILDING_BODY), 200, 201))

    step("2. Connect the building to Microsoft 365 (application consent by the tenant admin)")
    started = check(
        api.post(
            f"{b}/connection",
            json={
                "mode": "application",
                "tenant": e["tenantId"],
                "returnUrl": e["returnUrl"],
                "expectedAccount": e["admin"]["username"],  # the flow finishes only for them
            },
        ),
        200,
    )
    consent_url = started["authorizeUrl"] + "&login_hint=" + e["admin"]["username"]
    browser = httpx.Client(verify=e["caBundle"], trust_env=False, follow_redirects=False)
    url, hops = consent_url, 0
    while hops < 10:  # follow the browser's redirects until we are back at the return URL
        response = browser.get(url)
        if response.status_code not in (301, 302, 303, 307):
            break
        url = str(response.url.join(response.headers["location"]))
        hops += 1
        if url.startswith(e["returnUrl"].split("?")[0]):
            break
    show("returned to", url)
    result = parse_qs(urlsplit(url).query).get("status", ["?"])[0]
    show("status", result)
    show("GET connection", check(api.get(f"{b}/connection"), 200))

    step("3. Register resources: a room, a desk (not mapped), a paid amenity")
    for rid, body in {
        "boardroom-4a": {"name": "Board Room 4A", "kind": "room", "timeZone": TIME_ZONE, "capacity": 12},
        "desk-17": {"name": "Desk 17", "kind": "desk", "timeZone": TIME_ZONE},
        "sauna": {"name": "Rooftop sauna", "kind": "amenity", "paid": True, "timeZone": TIME_ZONE},
    }.items():  # fmt: skip
        check(api.put(f"{b}/resources/{rid}", json=body), 200, 201)
    resources = check(api.get(f"{b}/resources"), 200)["value"]
    for r in resources:
        show(r["id"], f"{r['name']}: sync {r['sync']['status']} ({r['sync'].get('reason')})")
    # Times below are on the building's clock: its resources' zone (the API has no building zone).
    zone = ZoneInfo(next(r["timeZone"] for r in resources if r["id"] == "boardroom-4a"))
    show("times below are in", f"{zone.key} (the building's zone), not UTC")

    step("4. Calendars this connection may map (room mailboxes via the Places API)")
    calendars = check(api.get(f"{b}/calendars"), 200)["value"]
    for c in calendars:
        show(c["kind"], f"{c['name']} <{c['mailbox']}> canEdit={c['canEdit']}")
    room = next(c for c in calendars if c["mailbox"].startswith("boardroom4a@"))

    step("5. Map Board Room 4A to its room mailbox")
    mapped = check(
        api.put(
            f"{b}/resources/boardroom-4a/mapping",
            json={"calendarId": room["id"], "mailbox": room["mailbox"]},
        ),
        200,
    )
    show("sync", mapped["sync"])
    show("paid sauna", check(api.put(f"{b}/resources/sauna/mapping", json={"calendarId": room["id"], "mailbox": room["mailbox"]}), 422).get("reason"))  # fmt: skip

    step("6. Companies and users (for attributing Outlook bookings)")
    domain = e["tenantDomain"]
    check(
        api.put(f"{b}/companies/contoso", json={"name": "Contoso", "domains": [domain]}), 200, 201
    )
    check(api.put(f"{b}/users/{e['admin']['username']}", json={"name": "Avery Admin", "companyId": "contoso"}), 200, 201)  # fmt: skip
    check(api.put(f"{b}/settings", json={"defaultUserEmail": e["admin"]["username"]}), 200)
    show("companies", check(api.get(f"{b}/companies"), 200)["value"])

    # The first two free hours from tomorrow on, "tomorrow" and the hours in the building's time
    # zone (the demo can run again and again against one `make run`: each run leaves its Outlook
    # booking behind, so a full tomorrow moves it on to the next day).
    first_day = now.astimezone(zone).date() + timedelta(days=1)
    search = {
        "from": _local(first_day, DAY_HOURS[0], zone).isoformat(),
        "to": _local(first_day + timedelta(days=SEARCH_DAYS - 1), DAY_HOURS[1], zone).isoformat(),
    }
    free = check(
        api.get(
            f"{b}/availability",
            params={**search, "resourceId": "boardroom-4a", "slotMinutes": 60},
        ),
        200,
    )["resources"][0]["free"]
    hours = free_windows(free, MEETING, now, zone)
    if len(hours) < 2:
        print(
            f"   no two free hours left in the {SEARCH_DAYS} days from tomorrow"
            f" ({DAY_HOURS[0]:02}:00-{DAY_HOURS[1]:02}:00 {TIME_ZONE}):"
            " restart `make run` with a clean .devstack/azurite"
        )
        return 1
    tomorrow, later = hours[0], hours[1]
    picked = ", ".join(f"{t.astimezone(zone):%a %d %b %H:%M}" for t in (tomorrow, later))
    show(f"free hours picked ({TIME_ZONE})", picked)
    window = {
        "from": _local(tomorrow.astimezone(zone).date(), DAY_HOURS[0], zone).isoformat(),
        "to": _local(later.astimezone(zone).date(), DAY_HOURS[1], zone).isoformat(),
    }

    step("7. Book Board Room 4A in the platform (written through to Outlook)")
    booking = check(
        api.post(
            f"{b}/bookings",
            headers={"Idempotency-Key": str(uuid.uuid4())},
            json={
                "resourceId": "boardroom-4a",
                "start": tomorrow.isoformat(),
                "end": (tomorrow + MEETING).isoformat(),
                "title": "Quarterly planning",
                "booker": {"email": e["admin"]["username"], "name": "Avery Admin"},
            },
        ),
        201,
    )
    show("booking", {k: booking.get(k) for k in ("id", "status", "syncState", "outlookEventId")})
    show("same slot again", check(api.post(f"{b}/bookings", headers={"Idempotency-Key": str(uuid.uuid4())}, json={"resourceId": "boardroom-4a", "start": tomorrow.isoformat(), "end": (tomorrow + timedelta(minutes=30)).isoformat(), "title": "x", "booker": {"email": e["admin"]["username"], "name": "Avery Admin"}}), 409).get("reason"))  # fmt: skip

    step("8. An employee books the room directly in Outlook (invites it as a resource)")
    emma = "emma@" + domain
    check(
        control.post(
            f"users/{emma}/events",
            json={
                "subject": "Design review",
                "start": {"dateTime": later.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {"dateTime": (later + MEETING).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "attendees": [{"emailAddress": {"address": room["mailbox"]}, "type": "resource"}],
            },
        ),
        201,
    )  # fmt: skip
    show("created in Outlook at", f"{later.isoformat()} ({local(later, zone)} {zone.key})")

    step("9. Sync: the change notification comes back; the slot becomes unavailable")
    t0 = time.monotonic()
    query: dict[str, str | int] = {**window, "resourceId": "boardroom-4a", "slotMinutes": 30}
    outlook: list[dict[str, Any]] = []
    while time.monotonic() - t0 < SYNC_WAIT_S:
        availability = check(api.get(f"{b}/availability", params=query), 200)
        busy = availability["resources"][0]["busy"]
        outlook = [
            x for x in busy
            if x["source"] == "outlook" and x["start"].startswith(later.strftime("%Y-%m-%dT%H:%M"))
        ]  # fmt: skip
        if outlook:
            break
        time.sleep(0.25)
    show(f"busy after {time.monotonic() - t0:.1f} s", "")
    for x in availability["resources"][0]["busy"]:
        show(f"  {span(x, zone)}", f"{x['source']} ({x['showAs']})")
    runs = availability["resources"][0].get("free", [])
    show("free (an entry is a whole free run)", ", ".join(span(x, zone) for x in runs[:4]))

    step("10. Bookings with attribution (the Outlook booker is a Contoso person)")
    bookings = check(api.get(f"{b}/bookings", params={"from": query["from"], "to": query["to"], "source": "all"}), 200)  # fmt: skip
    private = False
    for item in bookings["value"]:
        who = item.get("attribution") or {}
        show(
            f"{span(item, zone)} {item.get('source', '?')}",
            f"title {json.dumps(item.get('title'))}; attributed to {who.get('kind')} "
            f"{who.get('companyId') or ''} {who.get('userEmail') or ''}({who.get('reason')})",
        )
        private = private or (item.get("source") == "outlook" and item.get("title") is None)
    settings = check(api.get(f"{b}/settings"), 200)
    if private and not settings.get("storeExternalSubjects"):
        print(PRIVACY)

    step("11. Cancel the platform booking: gone on both sides")
    check(api.delete(f"{b}/bookings/{booking['id']}"), 204)
    after = check(api.get(f"{b}/bookings/{booking['id']}"), 200, 404)
    show("platform", after.get("status") if isinstance(after, dict) else "gone")
    room_events = check(control.get(f"graph/users/{room['mailbox']}/events"), 200)
    items = room_events.get("value", room_events) if isinstance(room_events, dict) else room_events
    still = [x for x in items if x.get("id") == booking.get("outlookEventId")]
    show("Outlook event in the room's calendar", "still there" if still else "gone")

    step("12. Sync health and audit")
    show("sync", check(api.get(f"{b}/sync"), 200))
    audit = check(api.get(f"{b}/audit", params={"top": 5}), 200)
    show("latest audit records", audit["value"])
    if not go_live(api, b):  # 13. the go-live check (issue 14)
        return 1
    day = later.astimezone(zone).date()
    print("\nDone: connect → map → book → Outlook booking synced back → attribution → cancel.")
    print(
        f"See it in the admin console (sign in as {e['admin']['username']} / "
        f"{e['admin']['password']}):\n  {e['consoleUrl']}#/b/{building}/bookings?date={day}"
    )
    return 0 if outlook and result == "connected" else 1


if __name__ == "__main__":
    sys.exit(main())
