"""Buildings for tests: every building-scoped route answers 404 `building_not_found` until its
building exists (issue 20), so a test creates its building first, with `ensure_building`."""

from __future__ import annotations

from typing import Any

import httpx


def ensure_building(
    api: httpx.Client, building: str, tz: str = "UTC", **fields: Any
) -> dict[str, Any]:
    """`building` as stored, created through the API (as a portal would) if it does not exist yet;
    an existing one is left as it is. `api` must be allowed to write it (Portal.Service, or a
    Building.Admin of it)."""
    found = api.get(f"buildings/{building}")
    if found.status_code == 200:
        return dict(found.json())
    assert found.status_code == 404, found.text
    body = {"name": fields.pop("name", building), "timeZone": tz, **fields}
    response = api.put(f"buildings/{building}", json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())
