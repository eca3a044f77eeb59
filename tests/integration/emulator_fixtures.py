"""Fixtures for tests against the Microsoft 365 emulator (one process per test session).

Import the fixtures into a test module (`from tests.integration.emulator_fixtures import ...`).
Tests that change grants, consents or revoke sessions seed their own fresh copy of the demo
tenant (`fresh_demo`), so one emulator serves every test without cross-talk.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import msal
import pytest
import requests

from devstack.m365 import RunningEmulator, start_emulator

# Tests never need a listener at this URI: they read the redirect's Location header.
REDIRECT_URI = "http://127.0.0.1:7071/api/oauth/callback"
ADMIN_CONSENT_URI = "http://127.0.0.1:7071/api/oauth/adminconsent"
GRAPH_SCOPES = ["User.Read", "Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadWrite.Shared"]


@pytest.fixture(scope="session")
def m365(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The session's emulator, seeded with the demo tenant, auto-consent on.

    M365_EMULATOR_GRAPH=0 leaves the Graph part out (to test identity/Key Vault in isolation).
    """
    base = tmp_path_factory.mktemp("m365")
    emulator = start_emulator(
        base / "tls",
        scenario="demo",
        log_path=base / "m365.log",
        graph=os.environ.get("M365_EMULATOR_GRAPH", "1") != "0",
        # Service tests subscribe graph_fixtures' http Sink: they opt in to http on loopback.
        env={"GRAPH_EMULATOR_ALLOW_HTTP_LOOPBACK": "1"},
    )
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def fresh_demo(m365: RunningEmulator) -> dict[str, Any]:
    """A fresh copy of the demo tenant and apps (new ids, domain and secrets)."""
    return m365.seed_scenario("demo", fresh=True)


def https_client(m365: RunningEmulator, **kwargs: Any) -> httpx.Client:
    """An httpx client that trusts only the emulator's CA (this machine's CA env vars ignored)."""
    context = ssl.create_default_context(cafile=m365.ca_bundle)
    return httpx.Client(verify=context, trust_env=False, timeout=30.0, **kwargs)


def msal_app(
    m365: RunningEmulator,
    tenant: str,
    client_id: str,
    secret: str,
    cache: msal.TokenCache | None = None,
) -> msal.ConfidentialClientApplication:
    # MACHINE.md: REQUESTS_CA_BUNDLE silently overrides msal's verify=; give it its own session.
    session = requests.Session()
    session.trust_env = False
    session.verify = m365.ca_bundle
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{m365.base_url}/{tenant}",
        instance_discovery=False,
        http_client=session,
        token_cache=cache,
    )


def jwks(m365: RunningEmulator, tenant: str) -> dict[str, Any]:
    with https_client(m365) as client:
        config = client.get(f"{m365.base_url}/{tenant}/v2.0/.well-known/openid-configuration")
        config.raise_for_status()
        keys = client.get(config.json()["jwks_uri"])
        keys.raise_for_status()
        result: dict[str, Any] = keys.json()
        return result


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "id": a.get("id"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name") and a.get("type") != "checkbox":
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def submit_form(
    client: httpx.Client, page: httpx.Response, values: dict[str, str]
) -> httpx.Response:
    """Fill the page's (only) form like a person would and post it back to the emulator."""
    parser = _FormParser()
    parser.feed(page.text)
    assert parser.forms, f"no form on page: {page.text[:300]}"
    form = parser.forms[0]
    return client.post(urljoin(str(page.url), form["action"]), data={**form["fields"], **values})


def redirect_params(response: httpx.Response, redirect_uri: str) -> dict[str, str]:
    """The query of a 302 to `redirect_uri` (the authorization response)."""
    assert response.status_code == 302, f"{response.status_code}: {response.text[:400]}"
    location = response.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return dict(parse_qsl(urlsplit(location).query))


class RedirectReceiver:
    """A tiny HTTP server standing in for the app's redirect URI (for the browser test)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/callback":  # e.g. the browser's /favicon.ico
                    self.send_error(404)
                    return
                receiver.requests.append(dict(parse_qsl(url.query)))
                body = b"<html><body><h1 id='done'>Signed in</h1></body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:  # keep codes out of the test log
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def redirect_receiver() -> Iterator[RedirectReceiver]:
    receiver = RedirectReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
