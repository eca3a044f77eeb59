"""Control API shared by all parts, under `/_emulator/`: seeding and the emulator clock.

Not a Microsoft API: this is how tests, `make run` and demos drive the emulator. Each part adds
its own control routes (`/_emulator/identity/...`, `/_emulator/graph/...`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devstack.m365.directory import SeedError
from devstack.m365.state import Emulator

log = logging.getLogger(__name__)

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def load_scenario(name_or_path: str | Path) -> dict[str, Any]:
    """A scenario by file path, or by name from devstack/scenarios (`demo` → demo.json)."""
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def seed(
    emulator: Emulator,
    scenario: dict[str, Any] | str,
    *,
    fresh: bool = False,
    redirect_uris: dict[str, list[str]] | None = None,
    spa_redirect_uris: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    data = load_scenario(scenario) if isinstance(scenario, str) else scenario
    result = emulator.directory.seed(
        data, fresh=fresh, redirect_uris=redirect_uris, spa_redirect_uris=spa_redirect_uris
    )
    emulator.last_seed = result
    # Ids only: the result also holds secrets and passwords, which never go to the log.
    log.info("seeded tenants %s", [t["id"] for t in result["tenants"].values()])
    return result


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def build_routes(emulator: Emulator) -> list[BaseRoute]:
    async def seed_route(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadRequest", "body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "body must be a JSON object")
        # Either {"scenario": <dict or name>, "fresh": bool, "redirectUris": {...},
        # "spaRedirectUris": {...}} or a scenario.
        scenario = body.get("scenario", body)
        try:
            result = seed(
                emulator,
                scenario,
                fresh=bool(body.get("fresh", False)),
                redirect_uris=body.get("redirectUris"),
                spa_redirect_uris=body.get("spaRedirectUris"),
            )
        except (SeedError, KeyError, FileNotFoundError) as exc:
            return _error(400, "BadScenario", f"{type(exc).__name__}: {exc}")
        return JSONResponse(result)

    async def clock_get(_: Request) -> Response:
        return JSONResponse(_clock_body(emulator))

    async def clock_advance(request: Request) -> Response:
        try:
            body = await request.json()
            seconds = float(body["seconds"])
            emulator.clock.advance(seconds)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "BadRequest", f'expected {{"seconds": n >= 0}}: {exc}')
        return JSONResponse(_clock_body(emulator))

    return [
        Route("/_emulator/seed", seed_route, methods=["POST"]),
        Route("/_emulator/clock", clock_get, methods=["GET"]),
        Route("/_emulator/clock/advance", clock_advance, methods=["POST"]),
    ]


def _clock_body(emulator: Emulator) -> dict[str, Any]:
    now = emulator.clock.now()
    return {
        "now": now.isoformat().replace("+00:00", "Z"),
        "timestamp": now.timestamp(),
        "offsetSeconds": emulator.clock.offset_seconds,
    }
