"""Microsoft's documented Graph examples replayed against the emulator (tests/data/graph_examples).

Each example's request is sent verbatim — only the ids, users and dates its `substitute` names are
replaced — and the answer is compared with the documented response: the status, the headers that
matter (`Content-Type` of a body, `Preference-Applied` where documented) and every documented
property's name and JSON type, recursively (`null` in the example matches any value; for a
collection the first documented item is compared with the first item returned, so the setup
gives each example the data its documented response shows). Properties a page
gets wrong against Graph's v1.0 `$metadata`, or that the emulator deliberately does not produce,
are in the example's `ignore` with the reason. No network: the examples are files.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.graph_fixtures import (
    SHARED,
    Sink,
    Tenant,
    day,
    dttz,
    emu_now,
    event_body,
    graph_emu,
    sink,
    subscribe,
    tenant,
    zulu,
)

__all__ = ["graph_emu", "sink", "tenant"]  # fixtures used by name below

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "graph_examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.json"))
DOCS_BASE = "https://graph.microsoft.com/v1.0"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_problems(doc: Any, got: Any, ignore: dict[str, str], path: str = "") -> list[str]:
    """Where `got` lacks a documented property or has another JSON type (names from the root)."""
    if doc is None:
        return []
    if json_type(doc) != json_type(got):
        return [f"{path or '/'}: documented {json_type(doc)}, got {json_type(got)}"]
    problems: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ignore:
                continue
            where = f"{path}/{key}"
            if key not in got:
                problems.append(f"{where}: missing")
                continue
            problems += shape_problems(value, got[key], ignore, where)
    elif isinstance(doc, list) and doc and got:
        # An empty list is the data's (a room without tags), not the shape's.
        problems += shape_problems(doc[0], got[0], ignore, f"{path}[0]")
    return problems


class Setup:
    """What an example needs to exist before its request: ids and dates to substitute."""

    def __init__(self, tenant: Tenant, sink: Sink) -> None:
        self.tenant = tenant
        self.sink = sink
        self.alice = tenant.as_user("alice", [*SHARED, "Calendars.Read.Shared"])
        self.values: dict[str, str] = {
            "$window.start": zulu(day(1)),
            "$window.end": zulu(day(4)),
            "$in_two_hours": (emu_now(tenant.emu) + dt.timedelta(hours=2)).strftime(
                "%Y-%m-%dT%H:%M:%S.0000000Z"
            ),
            "$roomlist": str(tenant.info["roomLists"]["hq-rooms"]["emailAddress"]),
        }
        for nick in tenant.info["users"]:
            self.values[f"$upn.{nick}"] = tenant.upn(nick)

    def created(self, client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post("/me/events", json=body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def run(self, kind: str | None) -> None:
        if kind == "own_event":
            invite = {"emailAddress": {"address": self.tenant.upn("bob")}, "type": "required"}
            ev = self.created(
                self.alice,
                event_body(
                    day(2, 9),
                    subject="Touchpoint",
                    location={"displayName": "Conf Room Rainier"},
                    attendees=[invite],
                ),
            )
            self.values["$event.id"] = ev["id"]
        elif kind == "invitation":
            bob = self.tenant.as_user("bob")
            invite = {"emailAddress": {"address": self.tenant.upn("alice")}, "type": "required"}
            ev = self.created(bob, event_body(day(2, 14), attendees=[invite]))
            mine = self.alice.get("/me/events").json()["value"]
            copy = next(e for e in mine if e["iCalUId"] == ev["iCalUId"])
            self.values["$event.id"] = copy["id"]
        elif kind == "event_2020_01_02":
            start = dt.datetime(2020, 1, 1, 21, 0)
            self.created(
                self.alice,
                {
                    "subject": "Late call",
                    "start": dttz(start, "Pacific Standard Time"),
                    "end": dttz(start + dt.timedelta(hours=1), "Pacific Standard Time"),
                },
            )
        elif kind == "three_events":
            for hour in (9, 11, 13):
                self.created(self.alice, event_body(day(2, hour)))
        elif kind == "lunch_2019_03_15":
            self.created(
                self.alice,
                {
                    "subject": "Let's go for lunch",
                    "location": {"displayName": "Harry's Bar"},
                    "start": dttz(dt.datetime(2019, 3, 15, 12), "Pacific Standard Time"),
                    "end": dttz(dt.datetime(2019, 3, 15, 14), "Pacific Standard Time"),
                },
            )
        elif kind == "subscription":
            r = subscribe(self.alice, "/me/events", self.sink, now=emu_now(self.tenant.emu))
            assert r.status_code == 201, r.text
            self.values["$subscription.id"] = r.json()["id"]
        else:
            assert kind is None, kind


def substituted(example: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    raw = json.dumps(example["request"])
    for doc_text, token in example.get("substitute", {}).items():
        raw = raw.replace(doc_text, values[token])
    request: dict[str, Any] = json.loads(raw)
    return request


@pytest.mark.parametrize("name", NAMES)
def test_documented_example(name: str, tenant: Tenant, sink: Sink) -> None:
    example = load(name)
    # Users in the examples are the page's fictitious people: "me" is alice here, the app is ours.
    if example.get("substitute"):
        assert all(v.startswith("$") for v in example["substitute"].values())
    setup = Setup(tenant, sink)
    setup.run(example.get("setup"))
    request = substituted(example, setup.values)
    client = (
        tenant.as_app(["Calendars.ReadWrite", "Place.Read.All"])
        if example["caller"] == "app"
        else setup.alice
    )
    url = request["url"].strip()
    assert url.startswith(DOCS_BASE)
    path = url[len(DOCS_BASE) :]
    headers = {k: v for k, v in (request.get("headers") or {}).items()}
    body = request.get("body")
    response = client.request(
        request["method"],
        path,
        headers=headers,
        content=json.dumps(body).encode() if body is not None else None,
    )
    documented = example["response"]
    assert response.status_code == documented["status"], response.text
    doc_headers = {k.lower(): v for k, v in documented.get("headers", {}).items()}
    if documented.get("body") is None:
        assert not response.content, response.text
    else:
        assert response.headers["content-type"].startswith("application/json")
        problems = shape_problems(documented["body"], response.json(), example.get("ignore", {}))
        assert problems == [], problems
    if "preference-applied" in doc_headers:
        assert response.headers.get("preference-applied") == doc_headers["preference-applied"]


def test_every_example_names_its_source() -> None:
    assert len(NAMES) >= 10
    for name in NAMES:
        source = load(name)["source"]
        assert source["repo"] == "microsoftgraph/microsoft-graph-docs-contrib", name
        assert source["path"].endswith(".md") and len(source["commit"]) == 40, name
        assert name in (EXAMPLES / "README.md").read_text(), name
