"""The local stack as `make run` starts it: every piece answers and endpoints.json is complete."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt

from devstack.stack import Stack
from shared.api.auth import caller_from_claims

FIXED_KEYS = {
    "functionsBaseUrl", "emulatorBaseUrl", "authorityHost", "graphBaseUrl", "keyVaultUrl",
    "caBundle", "tenantId", "tenantDomain", "app", "portal", "admin", "buildingId", "returnUrl",
    "storage",
}  # fmt: skip


def test_endpoints_json_has_every_fixed_key(stack: Stack) -> None:
    written = json.loads((stack.state_dir / "endpoints.json").read_text())
    assert set(written) >= FIXED_KEYS
    assert written["graphBaseUrl"] == written["emulatorBaseUrl"] + "/v1.0"
    assert set(written["app"]) >= {"clientId", "clientSecret"}
    assert written["portal"]["scope"].endswith("/.default")
    assert (stack.state_dir / "endpoints.json").stat().st_mode & 0o077 == 0  # holds secrets


def test_health_is_ok_for_every_component(anonymous: httpx.Client) -> None:
    response = anonymous.get("health", timeout=5)  # health answers within its own budget
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body == {
        "status": "ok",
        "components": {"tables": "ok", "queues": "ok", "keyVault": "ok", "graph": "ok"},
    }, body


def test_openapi_is_served(anonymous: httpx.Client) -> None:
    document = anonymous.get("openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/health" in document["paths"]


def test_admin_tokens_carry_role_and_buildings(
    stack: Stack, admin_token: str, other_admin_token: str
) -> None:
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    assert claims["roles"] == ["Building.Admin"]
    assert claims["buildings"] == [stack.endpoints["buildingId"]]
    assert claims["aud"] == stack.endpoints["app"]["clientId"]  # v2 tokens: client id
    admin = caller_from_claims(claims)
    assert admin.can_reach("demo-building") and not admin.can_reach("annex-building")
    other = caller_from_claims(jwt.decode(other_admin_token, options={"verify_signature": False}))
    assert other.buildings == frozenset({"annex-building"})


def test_fixed_emulator_control_routes(stack: Stack) -> None:
    """DEVSTACK.md fixes these two: act as an Outlook user, and read request stats."""
    control = stack.emulator.control
    upn = stack.endpoints["admin"]["username"]
    created = control.post(
        f"users/{upn}/events",
        json={
            "subject": "Planning",
            "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["subject"] == "Planning"
    stats = control.get("stats")
    assert stats.status_code == 200
    assert stats.json()["requests"]["total"] >= 0
