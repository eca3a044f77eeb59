"""docs/API.md against the OpenAPI description and the code, so the two cannot drift (issue 22).

- Every route in API.md's tables (the first cell: `METHOD /path`, or `GET · PATCH · DELETE /path`)
  is an operation of the OpenAPI description, and every operation is in API.md. Path parameters are
  compared by position only (API.md says `{b}`, OpenAPI `{building}`).
- The "Limits and defaults" section states the code's constants, each line built here from them.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared.api.openapi import openapi_document
from shared.availability.service import MAX_RANGE, SLOT_MINUTES_MAX, SLOT_MINUTES_MIN
from shared.bookings.model import IDEMPOTENCY_KEY_MAX, MAX_DURATION, MIN_DURATION
from shared.core.jsonbody import IMPORT_MAX_BYTES, MAX_BYTES, MAX_DEPTH
from shared.core.paging import TOP_DEFAULT, TOP_MAX
from shared.directory.userimport import IMPORT_MAX_ROWS
from shared.subscriptions.inbox import MAX_NOTIFICATION_BYTES

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}
MIB = 1024 * 1024


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented_routes(text: str) -> set[tuple[str, str]]:
    """(METHOD, path shape) of every route row of API.md's tables."""
    routes: set[tuple[str, str]] = set()
    for line in text.splitlines():
        if not line.startswith("| "):
            continue
        tokens = [t.strip() for t in line.split("|")[1].split("·")]
        if not tokens[0] or tokens[0].split()[0] not in METHODS:
            continue
        pending: list[str] = []  # `GET · PATCH · DELETE /path`: methods waiting for their path
        for token in tokens:
            parts = token.split()
            assert parts and parts[0] in METHODS and len(parts) <= 2, line
            if len(parts) == 1:
                pending.append(parts[0])
                continue
            assert parts[1].startswith("/"), line
            routes.update((m, _shape(parts[1])) for m in [*pending, parts[0]])
            pending = []
        assert not pending, line
    return routes


def described_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), _shape(path))
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }


def test_api_md_lists_exactly_the_operations_of_the_openapi_description() -> None:
    documented = documented_routes(API_MD.read_text())
    described = described_operations()
    assert not described - documented, f"in OpenAPI, missing from API.md: {described - documented}"
    assert not documented - described, f"in API.md, not in OpenAPI: {documented - described}"


def test_the_route_parser_reads_what_it_should() -> None:
    text = (
        "| GET · PATCH · DELETE /buildings/{b}/webhooks/{id} | admin | x |\n"
        "| POST /buildings/{b}/users:import | admin | y |\n| method path | auth | what |\n"
    )
    assert documented_routes(text) == {
        ("GET", "/buildings/{}/webhooks/{}"),
        ("PATCH", "/buildings/{}/webhooks/{}"),
        ("DELETE", "/buildings/{}/webhooks/{}"),
        ("POST", "/buildings/{}/users:import"),
    }


def limits() -> list[str]:
    """The lines API.md's "Limits and defaults" must say, from the constants."""
    return [
        f"- JSON bodies: at most {MAX_BYTES // MIB} MiB (`users:import`: {IMPORT_MAX_BYTES // MIB} "
        f"MiB; the Graph webhook: {MAX_NOTIFICATION_BYTES // MIB} MiB), nested at most "
        f"{MAX_DEPTH} levels.",
        f"- `POST /buildings/{{b}}/users:import`: at most {IMPORT_MAX_ROWS} rows per request",
        f"- `top` of a paged list: 1 to {TOP_MAX}, default {TOP_DEFAULT}.",
        "- `Idempotency-Key` on `POST /buildings/{b}/bookings`: optional, at most "
        f"{IDEMPOTENCY_KEY_MAX} characters.",
        f"- A booking lasts {MIN_DURATION.seconds // 60} minute to {MAX_DURATION.days} days.",
        f"- `from`/`to` of availability: at most {MAX_RANGE.days} days apart.",
        f"- `slotMinutes` of availability: {SLOT_MINUTES_MIN} to {SLOT_MINUTES_MAX}, no default; "
        "without it the answer has no `free` slots.",
    ]


def test_limits_and_defaults_in_api_md_are_the_code_constants() -> None:
    text = API_MD.read_text()
    section = text.split("## Limits and defaults", 1)[1].split("\n## ", 1)[0]
    for line in limits():
        assert line in section, f"API.md should say: {line}"


def test_the_description_agrees_on_idempotency_key_and_top() -> None:
    paths = openapi_document()["paths"]
    [key] = [
        p
        for p in paths["/buildings/{building}/bookings"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert key["required"] is False and key["schema"]["maxLength"] == IDEMPOTENCY_KEY_MAX
    [top] = [
        p for p in paths["/buildings/{building}/users"]["get"]["parameters"] if p["name"] == "top"
    ]
    assert (top["schema"]["maximum"], top["schema"]["default"]) == (TOP_MAX, TOP_DEFAULT)
