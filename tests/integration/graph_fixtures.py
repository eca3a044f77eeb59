"""Fixtures for the Graph emulator tests: one emulator per test session, fresh tenants per test.

`graph_emu` starts the M365 emulator (the core's `start_emulator`); `tenant` seeds a fresh copy of
a small scenario (people, rooms, a room list, a secondary calendar, shares, an RBAC-scoped app)
and hands out tokens minted through the Graph control API, so each test can choose exact scopes.
`Sink` is a tiny webhook endpoint (validation echo + recording notifications).
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.m365 import RunningEmulator, start_emulator

SCENARIO: dict[str, Any] = {
    "apps": [
        {"key": "bb", "displayName": "BookingBridge"},
        {"key": "scoped", "displayName": "Room-scoped app"},
    ],
    "tenants": [
        {
            "key": "contoso",
            "domain": "contoso.example",
            "displayName": "Contoso",
            "users": [
                {"mailNickname": "alice", "displayName": "Alice Adams"},
                {"mailNickname": "bob", "displayName": "Bob Brown"},
                {"mailNickname": "carol", "displayName": "Carol Clark"},
                {"mailNickname": "dave", "displayName": "Dave Davis"},
                {
                    "mailNickname": "room1",
                    "displayName": "Room One",
                    "type": "room",
                    "room": {"capacity": 8, "building": "HQ", "floorNumber": 1},
                },
                {
                    "mailNickname": "room2",
                    "displayName": "Room Two",
                    "type": "room",
                    "room": {"capacity": 4, "building": "HQ", "floorNumber": 2},
                },
            ],
            "roomLists": [
                {"mailNickname": "hq-rooms", "displayName": "HQ rooms", "rooms": ["room1", "room2"]}
            ],
            "calendars": [{"owner": "alice", "name": "Projects"}],
            "calendarShares": [
                {"owner": "alice", "sharedWith": "bob", "role": "write"},
                {"owner": "alice", "sharedWith": "carol", "role": "read"},
            ],
            "rbacAssignments": [
                {"app": "scoped", "role": "Application Calendars.ReadWrite", "mailboxes": ["room1"]}
            ],
        }
    ],
}

OWN = ["User.Read", "Calendars.Read", "Calendars.ReadWrite"]
SHARED = [*OWN, "Calendars.ReadWrite.Shared"]


@pytest.fixture(scope="session")
def graph_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    base = tmp_path_factory.mktemp("graph-emu")
    # Graph wants https notification URLs; these tests' Sink is http on loopback, so they opt in.
    emulator = start_emulator(
        base / "tls", log_path=base / "m365.log", env={"GRAPH_EMULATOR_ALLOW_HTTP_LOOPBACK": "1"}
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass
class Tenant:
    emu: RunningEmulator
    seed: dict[str, Any]
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.seed["tenants"]["contoso"]
        return info

    @property
    def id(self) -> str:
        return str(self.info["id"])

    def upn(self, nick: str) -> str:
        return str(self.info["users"][nick]["userPrincipalName"])

    def uid(self, nick: str) -> str:
        return str(self.info["users"][nick]["id"])

    def app(self, key: str = "bb") -> str:
        return str(self.seed["apps"][key]["clientId"])

    def token(
        self,
        user: str | None = None,
        scopes: list[str] | None = None,
        roles: list[str] | None = None,
        app: str = "bb",
        **extra: Any,
    ) -> str:
        body: dict[str, Any] = {"tenantId": self.id, "clientId": self.app(app), **extra}
        if user:
            body.update(user=self.upn(user), scopes=scopes if scopes is not None else OWN)
        else:
            body["roles"] = roles if roles is not None else ["Calendars.ReadWrite"]
        r = self.emu.control.post("graph/token", json=body)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self, token: str, **headers: str) -> httpx.Client:
        c = httpx.Client(
            base_url=self.emu.graph_url,
            verify=ssl.create_default_context(cafile=self.emu.ca_bundle),
            trust_env=False,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}", **headers},
        )
        self.clients.append(c)
        return c

    def as_user(self, nick: str, scopes: list[str] | None = None, **headers: str) -> httpx.Client:
        return self.client(self.token(nick, scopes), **headers)

    def as_app(
        self, roles: list[str] | None = None, app: str = "bb", **headers: str
    ) -> httpx.Client:
        return self.client(self.token(roles=roles, app=app), **headers)


@pytest.fixture
def tenant(graph_emu: RunningEmulator) -> Iterator[Tenant]:
    t = Tenant(graph_emu, graph_emu.seed_scenario(SCENARIO, fresh=True))
    try:
        yield t
    finally:
        for c in t.clients:
            c.close()
        graph_emu.control.delete("graph/faults")


def day(offset_days: int, hour: int = 9, minute: int = 0) -> dt.datetime:
    """A UTC instant a few days from now (rooms only book within their booking window)."""
    base = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return base + dt.timedelta(days=offset_days, hours=hour, minutes=minute)


def dttz(moment: dt.datetime, tz: str = "UTC") -> dict[str, str]:
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": tz}


def zulu(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    start: dt.datetime, minutes: int = 60, subject: str = "Sync", **extra: Any
) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": dttz(start),
        "end": dttz(start + dt.timedelta(minutes=minutes)),
        **extra,
    }


def view_params(start: dt.datetime, end: dt.datetime, **extra: str) -> dict[str, str]:
    return {"startDateTime": zulu(start), "endDateTime": zulu(end), **extra}


class Sink:
    """A webhook endpoint on loopback: echoes validation tokens, records notifications.

    Plain http by default (the emulator accepts it only where `allowHttpLoopback` is on, as the
    fixture `graph_emu` sets); with `tls_dir` (the emulator's TLS folder) it serves https with the
    local server certificate, as Graph requires of a notification URL.
    """

    def __init__(self, tls_dir: Path | str | None = None) -> None:
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self.mode = "ok"  # ok | fail | bad-echo | json-echo | slow
        self.validations = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if "validationToken" in query:
                    sink.validations += 1
                    token = query["validationToken"][0]
                    if sink.mode == "bad-echo":
                        token = urllib.parse.quote(token)
                    body = token.encode()
                    ctype = "application/json" if sink.mode == "json-echo" else "text/plain"
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with sink.lock:
                    sink.received.append((time.monotonic(), self.path, json.loads(raw or b"{}")))
                status = 500 if sink.mode == "fail" else 202
                if sink.mode == "slow":
                    time.sleep(3.2)  # "slow": an endpoint slower than Graph's 3 s delivery timeout
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(Path(tls_dir) / "server.pem", Path(tls_dir) / "server-key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/notify"

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return [i for _t, _p, body in self.received for i in body.get("value", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    try:
        yield s
    finally:
        s.close()


def emu_now(emu: RunningEmulator) -> dt.datetime:
    """The emulator clock (other tests may have moved it)."""
    offset = float(emu.control.get("clock").json()["offsetSeconds"])
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)


def subscribe(
    client: httpx.Client,
    resource: str,
    sink: Sink,
    minutes: float = 60,
    *,
    now: dt.datetime | None = None,
    **extra: Any,
) -> httpx.Response:
    expiry = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(minutes=minutes)
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": sink.url,
        "lifecycleNotificationUrl": sink.url + "?lifecycle=1",
        "resource": resource,
        "expirationDateTime": expiry.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        "clientState": "s3cret-state",
        **extra,
    }
    return client.post("/subscriptions", json=body)
