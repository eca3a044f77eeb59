"""CORS for browser frontends through the local Functions host (issue 22).

The session stack allows one origin (`portal_origin`, conftest.py). Preflights from it and from a
refused origin, an actual call carrying Access-Control-Allow-Origin and the exposed headers, and a
real browser page on that origin calling the API with a bearer token and If-Match (a preflighted
request), which Chromium lets through only if the CORS answers are right.
"""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.building_fixtures import ensure_building

ROOM = {"name": "Room", "kind": "room", "timeZone": "Europe/Amsterdam"}


def _preflight(anonymous: httpx.Client, path: str, origin: str, method: str) -> httpx.Response:
    return anonymous.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )


def test_a_preflight_from_the_allowed_origin_is_answered_by_the_app(
    anonymous: httpx.Client, portal_origin: str
) -> None:
    answer = _preflight(anonymous, "buildings/b1/resources/r1", portal_origin, "PUT")
    assert answer.status_code == 204, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == portal_origin
    methods = {m.strip() for m in answer.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "PATCH", "DELETE"} <= methods
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "if-match"} <= allowed
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in answer.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in answer.headers  # not configured


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost", "null"])
def test_a_preflight_from_a_refused_origin_gets_no_cors_headers(
    anonymous: httpx.Client, portal_origin: str, origin: str
) -> None:
    if origin == "http://localhost":
        origin = portal_origin.replace("127.0.0.1", "localhost")  # the same server, another origin
    answer = _preflight(anonymous, "buildings/b1/bookings", origin, "POST")
    assert answer.status_code == 204, answer.text  # as the Azure host's CORS middleware answers
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]
    assert answer.headers["Vary"] == "Origin"  # a cache must not hand it to the allowed origin


def test_an_actual_call_carries_allow_origin_and_exposed_headers(
    api: httpx.Client, portal_origin: str
) -> None:
    building = f"cors-{uuid.uuid4().hex[:10]}"
    ensure_building(api, building)
    path = f"buildings/{building}/resources/r1"
    put = api.put(path, json=ROOM, headers={"Origin": portal_origin})
    assert put.status_code == 201, put.text
    assert put.headers["Access-Control-Allow-Origin"] == portal_origin
    exposed = {h.strip() for h in put.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Location", "Retry-After", "WWW-Authenticate", "Idempotent-Replayed"} <= exposed
    # Errors too: a portal can only read a 401's problem and challenge if CORS allows it.
    refused = httpx.get(str(api.base_url) + path, headers={"Origin": portal_origin})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == portal_origin
    other = api.get(path, headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    same_origin = api.get(path)  # no Origin: no CORS headers, but still Vary
    assert "Access-Control-Allow-Origin" not in same_origin.headers
    assert same_origin.headers["Vary"] == "Origin"


@pytest.fixture
def portal_page(portal_origin: str) -> Iterator[str]:
    """A portal's page served on the allowed origin (a real server: the browser must see it on
    loopback to let it call the loopback API)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>portal</title><p>portal"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", urlsplit(portal_origin).port or 80), Page
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield portal_origin + "/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_a_browser_page_on_the_portal_origin_calls_the_api(
    endpoints: dict[str, Any], portal_token: str, api: httpx.Client, portal_page: str
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (make browser installs Debian's)")
    from playwright.sync_api import sync_playwright

    building = f"cors-{uuid.uuid4().hex[:10]}"
    ensure_building(api, building)
    path = f"buildings/{building}/resources/r1"
    etag = api.put(path, json=ROOM).headers["ETag"]
    base = endpoints["functionsBaseUrl"]
    script = """async ([url, token, etag, body]) => {
        const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
        const read = await fetch(url, {headers});
        const put = await fetch(url, {method: "PUT", body,
                                      headers: {...headers, "If-Match": read.headers.get("ETag")}});
        const stale = await fetch(url, {method: "PUT", body, headers: {...headers, "If-Match": etag}});
        let blocked = "no";
        try { await fetch(url.replace("/resources/r1", "/resources/r2"), {method: "DELETE",
                          headers: {...headers, "X-Not-Allowed": "1"}}); }
        catch (e) { blocked = "yes"; }
        return {read: read.status, etag: read.headers.get("ETag"), put: put.status,
                stale: stale.status, staleReason: (await stale.json()).reason, blocked};
    }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(portal_page)
            seen = page.evaluate(
                script, [f"{base}/{path}", portal_token, etag, json.dumps({**ROOM, "name": "B"})]
            )
        finally:
            browser.close()
    assert seen["read"] == 200 and seen["etag"] == etag  # ETag readable: it is exposed
    assert seen["put"] == 200  # preflighted (Authorization, If-Match) and allowed
    # The stale write reached the API and its problem was readable cross-origin... but the
    # first PUT changed the version, so the held ETag is stale now.
    assert (seen["stale"], seen["staleReason"]) == (412, "precondition_failed")
    assert seen["blocked"] == "yes"  # a header the API does not allow: Chromium refuses the call
    assert api.get(path).json()["name"] == "B"
