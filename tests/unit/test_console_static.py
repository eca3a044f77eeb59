"""The console's static side (shared/api/console.py, functions/console.py), on a made-up bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.api import console
from shared.api.auth import ACCESS_AS_USER
from shared.core.errors import NotFound, ValidationFailed
from shared.core.settings import get_settings, load_settings

AUTHORITY = "https://login.example:8443"
ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "BB_KEY_VAULT_URL": "https://kv.example/",
    "BB_AUTHORITY_HOST": AUTHORITY,
    "BB_CLIENT_ID": "5b0e7c2e-9d43-4f6a-8a51-3c1f0d2b7e91",
    "BB_PUBLIC_BASE_URL": "https://bb.example/api",
    "BB_API_AUDIENCE": "api://bookingbridge",
    "BB_API_TENANT_ID": "3f2c8e1a-6b7d-4c59-9e0a-1d4b5c6e7f80",
}


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>Console</title>")
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    (root / "assets" / "index-abc123.css").write_text("body{}")
    (root / "assets" / "index-abc123.js.map").write_text("{}")
    (root / "assets" / "font-x.woff2").write_bytes(b"wOF2")
    (root / "logo.svg").write_text("<svg/>")
    (root / "icon.png").write_bytes(b"\x89PNG")
    (tmp_path / "secret.txt").write_text("outside the bundle")
    return root


def serve(path: str, dist: Path, request_path: str | None = None) -> console.StaticFile:
    return console.serve(
        path,
        request_path=request_path or f"/api/console/{path}",
        authority=AUTHORITY,
        dist=dist,
    )


def test_config_document_has_what_msal_needs_and_no_secret() -> None:
    document = console.config_document(load_settings(ENV))
    assert document == {
        "clientId": ENV["BB_CLIENT_ID"],
        "authority": f"{AUTHORITY}/{ENV['BB_API_TENANT_ID']}",
        "scopes": [f"api://bookingbridge/{ACCESS_AS_USER}"],
        "redirectUri": "https://bb.example/api/console/",
        "apiBase": "/api",
        "knownAuthorities": ["login.example:8443"],
    }
    assert console.SCOPE == ACCESS_AS_USER


def test_index_and_hashed_assets(dist: Path) -> None:
    index = serve("", dist)
    assert index.status == 200 and index.body.startswith(b"<!doctype html>")
    assert index.content_type == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    assert serve("index.html", dist).body == index.body
    script = serve("assets/index-abc123.js", dist)
    assert script.content_type == "text/javascript; charset=utf-8"
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    expected = {
        "assets/index-abc123.css": "text/css; charset=utf-8",
        "assets/index-abc123.js.map": "application/json",
        "assets/font-x.woff2": "font/woff2",
        "logo.svg": "image/svg+xml",
        "icon.png": "image/png",
    }
    for path, content_type in expected.items():
        assert serve(path, dist).content_type == content_type, path
    assert serve("logo.svg", dist).headers["Cache-Control"] == "no-cache"  # not hashed


def test_security_headers_on_every_file(dist: Path) -> None:
    for path in ("", "assets/index-abc123.js", "logo.svg"):
        headers = serve(path, dist).headers
        policy = dict(
            part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
        )
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
        assert policy["connect-src"] == f"'self' {AUTHORITY}"
        assert policy["frame-src"] == AUTHORITY and policy["frame-ancestors"] == "'none'"
        assert (
            policy["default-src"] == "'none'" and "unsafe" not in headers["Content-Security-Policy"]
        )
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    without = console.security_headers(None)["Content-Security-Policy"]
    assert "connect-src 'self';" in without and "frame-src 'none'" in without


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "assets/../../secret.txt",
        "..",
        "/etc/passwd",
        "a\\..\\b",
        "x\x00.js",
        "~root",
    ],
)
def test_paths_leaving_the_bundle_are_400(dist: Path, path: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        serve(path, dist)
    assert info.value.status == 400 and info.value.errors[0].field == "path"


def test_a_symlink_out_of_the_bundle_is_refused(dist: Path) -> None:
    (dist / "assets" / "leak.txt").symlink_to(dist.parent / "secret.txt")
    with pytest.raises(ValidationFailed):
        serve("assets/leak.txt", dist)


def test_unknown_file_is_404(dist: Path) -> None:
    for path in ("assets/nope.js", "assets", "b/demo-building"):
        with pytest.raises(NotFound):
            serve(path, dist)


def test_without_the_slash_redirects_so_relative_urls_resolve(dist: Path) -> None:
    moved = serve("", dist, request_path="/api/console")
    assert moved.status == 301 and moved.headers["Location"] == "console/"


def test_missing_bundle_is_a_page_saying_how_to_build_it(tmp_path: Path) -> None:
    page = serve("", tmp_path / "never-built")
    assert page.status == 200 and b"make console" in page.body
    assert page.content_type.startswith("text/html")
    with pytest.raises(NotFound):
        serve("assets/index-abc123.js", tmp_path / "never-built")


# ------------------------------------------------------------------ the HTTP triggers
def _request(route: str, path: str | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/{route}",
        headers={},
        route_params={"path": path} if path is not None else {},
        body=b"",
    )


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_config_route(settings_env: Any) -> None:
    from functions.console import console_config

    response = console_config(_request("console/config.json"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body["redirectUri"] == "https://bb.example/api/console/"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "secret" not in json.dumps(body).lower()


def test_file_route(settings_env: Any, dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.console import console_file

    monkeypatch.setattr(console, "DIST", dist)
    page = console_file(_request("console/", ""))
    assert page.status_code == 200 and page.get_body().startswith(b"<!doctype html>")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert AUTHORITY in page.headers["Content-Security-Policy"]
    missing = console_file(_request("console/assets/nope.js", "assets/nope.js"))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    escape = console_file(_request("console/..%2Fsecret.txt", "../secret.txt"))
    assert escape.status_code == 400
