"""The OpenAPI description against the running API, by schemathesis (issue 20).

Every operation of `GET /api/openapi.json` is called with generated requests (examples, coverage
and fuzzing phases; valid and invalid data) as a Portal.Service, on a building connected to a
fresh tenant with the demo rooms mapped, so valid requests reach real code. Every check is on:
no server error, every status, content type, header and body as described, invalid requests
refused, valid ones accepted. A second test walks the OpenAPI links (create -> read -> update ->
delete) as a state machine.

A valid request may be refused only by a rule JSON Schema cannot say (a limit between two fields,
a fact of stored state, a time relative to now), and only when that rule is written in the
description and listed in EXEMPT below with its reason; anything else fails the test.

Seeded: the seed is printed, and `BB_SCHEMATHESIS_SEED=<seed>` replays a run; failures print the
curl command that reproduces them. `BB_SCHEMATHESIS_EXAMPLES` raises the examples per operation
for a deeper local run (CI keeps the default, so the file stays near a minute on 2 cores).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import RejectedPositiveData

from devstack.stack import Stack
from shared.api.openapi import openapi_document
from shared.core import etags
from tests.e2e.booking_fixtures import Booked, connect_application, map_rooms
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.connect_fixtures import fresh_tenant

pytestmark = pytest.mark.timeout(600)

SEED = int(os.environ.get("BB_SCHEMATHESIS_SEED", "20261204"))
EXAMPLES = int(os.environ.get("BB_SCHEMATHESIS_EXAMPLES", "8"))
STATEFUL_STEPS = int(os.environ.get("BB_SCHEMATHESIS_STEPS", "6"))
STATEFUL_EXAMPLES = int(os.environ.get("BB_SCHEMATHESIS_SCENARIOS", "10"))

# Operations that would take the building's connection away from the operations after them: they
# run on a building of their own, so every other operation keeps reaching connected, mapped code.
ON_SCRATCH_BUILDING = ("DELETE /buildings/{building}/connection",)


@dataclass(frozen=True)
class Exempt:
    """A valid request refused by a documented rule that JSON Schema cannot express."""

    operation: str  # "METHOD /path" as in the description
    status: int
    match: str  # the problem's `reason`, or "<field>: <message start>" of one of its `errors`
    why: str


_BOOKINGS = "/buildings/{building}/bookings"
_FUTURE = (
    "a booking ends in the future, 1 minute to 14 days after it starts, within 730 days from "
    "now (rules between fields and the clock)"
)
_RANGE = "`to` after `from`, at most 31 days later (a rule between two parameters)"
_DAYS = (
    "`to` not before `from`, at most 366 days later (a query) or 31 (a rebuild), and a rebuild "
    "only of days that have closed (rules between two parameters and the clock)"
)
_STATE = "names something the building must already hold (stored state, not shape)"
_GRAPH = "names a calendar the connection can see and write in Microsoft 365 (state of the tenant)"
_PRINTABLE = (
    "printable text (Python's str.isprintable: no control, format or separator characters "
    "but the space), narrower than a JSON Schema pattern can list"
)
_WHOLE = (
    "whole seconds: a date-time's fraction must be zeros (JSON Schema's format has no such rule)"
)

# The one table of positive-data refusals allowed, each a rule written in the description.
EXEMPT: tuple[Exempt, ...] = (
    *(
        Exempt(operation, 400, match, why)
        for operation in (f"POST {_BOOKINGS}", f"PATCH {_BOOKINGS}/{{booking}}")
        for match, why in (
            ("end: must be after start", _FUTURE),
            ("end: must be in the future", _FUTURE),
            ("end: must be at least", _FUTURE),
            ("end: must be at most", _FUTURE),
            ("start: must be within", _FUTURE),
            ("start: must be a whole second", _WHOLE),
            ("end: must be a whole second", _WHOLE),
            ("title: must be at most", _PRINTABLE),
        )
    ),
    *(
        Exempt(operation, 400, match, _DAYS)
        for operation in (
            "GET /buildings/{building}/analytics",
            "POST /buildings/{building}/analytics:rebuild",
        )
        for match in (
            "to: must not be before from",
            "to: must be at most",
            "to: must be a day that",
        )
    ),
    Exempt(f"GET {_BOOKINGS}", 400, "to: must be after from", _RANGE),
    Exempt(f"GET {_BOOKINGS}", 400, "to: must be at most", _RANGE),
    Exempt("GET /buildings/{building}/availability", 400, "to: must be after from", _RANGE),
    Exempt("GET /buildings/{building}/availability", 400, "to: must be at most", _RANGE),
    Exempt("GET /buildings/{building}/audit", 400, "from: range must be at most", _RANGE),
    Exempt("GET /buildings/{building}/audit", 400, "to: must be after from", _RANGE),
    Exempt("GET /buildings/{building}/audit", 400, "from: must not be after", _RANGE),
    Exempt(f"POST {_BOOKINGS}", 400, "booker.name: must be", _PRINTABLE),
    Exempt(f"POST {_BOOKINGS}", 400, "Idempotency-Key: must be 1", _PRINTABLE),
    *(
        Exempt(f"PUT /buildings/{{building}}/{what}", 400, "name: must be at most", _PRINTABLE)
        for what in ("resources/{resource}", "companies/{company}", "users/{email}")
    ),
    *(
        Exempt(
            "PUT /buildings/{building}/resources/{resource}",
            400,
            f"{label}: must be a label",
            _PRINTABLE,
        )
        for label in ("floor", "section")
    ),
    *(
        Exempt(
            "POST /buildings/{building}/places:import",
            422,
            match,
            "the places named must exist and be bookable in the tenant, and new resources "
            "need a zone (" + _STATE + ")",
        )
        for match in ("placeIds[", "places: ", "timeZone: is required to create")
    ),
    *(
        Exempt(
            "POST /buildings/{building}/mappings:import",
            422,
            match,
            "each row's mailbox must be a room of the tenant, its resource id and mailbox once in "
            "the request, its name printable, and new resources need a zone (" + _GRAPH + ")",
        )
        for match in ("mappings[", "timeZone: is required to create")
    ),
    Exempt(
        "PUT /buildings/{building}/resources/{resource}/mapping",
        400,
        "calendarId: must be a calendar id",
        _PRINTABLE,
    ),
    Exempt(
        "GET /buildings/{building}/calendars",
        400,
        "roomList: cannot be combined with mailbox",
        "mailbox and roomList exclude each other (a rule between two parameters)",
    ),
    Exempt(
        "POST /buildings/{building}/connection",
        400,
        "expectedAccount: is required when a service",
        "a Portal.Service caller must name the account (expectedAccount or loginHint): a rule "
        "between the caller and two fields",
    ),
    *(
        Exempt(
            f"POST /graph/{route}",
            415,
            "not_json",
            "the empty text/plain body is only for a validation request (?validationToken=)",
        )
        for route in ("notifications", "lifecycle")
    ),
    *(
        Exempt(
            operation,
            412,
            "precondition_failed",
            "If-Match must name the version stored now (state: any other well-formed tag is 412)",
        )
        for operation in (
            "PUT /buildings/{building}/resources/{resource}",
            "DELETE /buildings/{building}/resources/{resource}",
            "PATCH /buildings/{building}/bookings/{booking}",
            "DELETE /buildings/{building}/bookings/{booking}",
            "PUT /buildings/{building}/settings",
        )
    ),
    Exempt("PUT /buildings/{building}/users/{email}", 422, "unknown_company", _STATE),
    # The links state machine may delete a resource or its mapping before it books it.
    Exempt(f"POST {_BOOKINGS}", 400, "resourceId: is not a resource", _STATE),
    Exempt(f"POST {_BOOKINGS}", 422, "not_mapped", _STATE),
    Exempt("POST /buildings/{building}/users:import", 422, "rows_rejected", _STATE),
    Exempt("GET /buildings/{building}/calendars", 422, "room_list_not_found", _STATE),
    Exempt("GET /buildings/{building}/calendars", 422, "mailbox_not_found", _STATE),
    Exempt("PUT /buildings/{building}/settings", 422, "unknown_user", _STATE),
    Exempt("POST /buildings/{building}/checks", 400, "resourceIds[", _STATE),
    Exempt("POST /buildings/{building}/checks", 422, "no_mapped_resources", _STATE),
    *(
        Exempt("PUT /buildings/{building}/resources/{resource}/mapping", 422, reason, _GRAPH)
        for reason in ("calendar_not_found", "access_denied", "not_writable", "not_supported")
    ),
    Exempt(
        "POST /buildings/{building}/users:import",
        400,
        "header: ",
        "a CSV file's header must name email, name and companyId (a string schema cannot say)",
    ),
    Exempt(
        "POST /buildings/{building}/connection",
        400,
        "tenant: must be the tenant id or a verified domain",
        "application mode needs `tenant` (a rule between two fields)",
    ),
    *(
        Exempt(operation, 400, "description: must be at most", _PRINTABLE)
        for operation in (
            "POST /buildings/{building}/webhooks",
            "PATCH /buildings/{building}/webhooks/{webhook}",
        )
    ),
    Exempt(
        "POST /buildings/{building}/webhooks",
        422,
        "unsafe_url",
        "the url's host must resolve to public addresses only (a fact of DNS, not of shape)",
    ),
    *(
        Exempt(
            f"GET /buildings/{{building}}/{route}",
            400,
            "continuationToken: is not a valid continuation token",
            "an opaque token from a previous page (state); any other string is refused",
        )
        for route in (
            "users",
            "resources",
            "companies",
            "bookings",
            "audit",
            "checks",
            "webhooks/{webhook}/deliveries",
        )
    ),
    *(
        Exempt(
            f"GET /buildings/{{building}}/{route}",
            400,
            "limit: cannot be combined with top",
            "`limit` is the older name of `top`: one of the two (a rule between two parameters)",
        )
        for route in ("audit", "checks", "webhooks/{webhook}/deliveries")
    ),
    *(
        Exempt(
            f"GET /oauth/{route}",
            400,
            "state: is unknown, already used or expired",
            "the single-use state of a sign-in this API started (state)",
        )
        for route in ("callback", "adminconsent")
    ),
    Exempt(
        "POST /buildings/{building}/connection",
        400,
        "returnUrl: origin is not allow-listed",
        "the origin must be in BB_RETURN_URL_ORIGINS (deployment configuration)",
    ),
    Exempt("PUT /buildings/{building}", 400, "name: must be at most", _PRINTABLE),
    Exempt("PUT /buildings/{building}", 400, "address: must be text", "no NUL character"),
    Exempt(
        "PUT /buildings/{building}",
        400,
        "businessHours.",
        "each day's intervals end after they start, ascending and not overlapping (rules "
        "between fields)",
    ),
    Exempt("DELETE /buildings/{building}", 409, "building_in_use", _STATE),
    Exempt(
        "PUT /buildings/{building}/companies/{company}",
        400,
        "domains[",
        "a domain name (IDN accepted and stored in ASCII form): a pattern would refuse what "
        "the server accepts",
    ),
)


@dataclass(frozen=True)
class Gap:
    """A known difference between the description and the server, still to close (issue 20)."""

    operation: str
    code: str  # schemathesis failure code, e.g. ST105
    why: str


# Left to close; each entry is a failure this test tolerates on that operation only. Shrink it.
GAPS: tuple[Gap, ...] = (
    *(
        Gap(
            f"POST /graph/{route}",
            "ST201",
            "a validation request (?validationToken=) is answered without reading its body",
        )
        for route in ("notifications", "lifecycle")
    ),
)


def _gap(case: Any, response: Any, failure: Any) -> bool:
    label = case.operation.label
    return any(g.operation == label and g.code == failure.code for g in GAPS) or (
        failure.code == "ST105" and _host_404(case, response)
    )


def _host_404(case: Any, response: Any) -> bool:
    """Gap: the local Functions host (devstack/host) answers a path whose id holds a line break
    with its own bodiless 404, before any function runs (Azure's host routes it to the function,
    whose 400 names the id). Tolerated only in exactly that case; devstack/host to be fixed."""
    ids = (case.path_parameters or {}).values()
    return response.status_code == 404 and any(
        isinstance(v, str) and ("\n" in v or "\r" in v) for v in ids
    )


def _exempt(operation: str, response: httpx.Response | Any) -> bool:
    """True when a refusal of valid data is explained entirely by EXEMPT rules."""
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    rules = [e for e in EXEMPT if e.operation == operation and e.status == response.status_code]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return all(
            any(f"{err.get('field')}: {err.get('message')}".startswith(r.match) for r in rules)
            for err in errors
            if isinstance(err, dict)
        )
    return any(body.get("reason") == r.match for r in rules)


BUILDING = "schemathesis-building"  # fixed: the schema's parameters are set at collection


@pytest.fixture(scope="module")
def bb(stack: Stack, api: httpx.Client, anonymous: httpx.Client) -> Booked:
    """The building every operation is called on: connected, with the demo rooms mapped."""
    tenant = fresh_tenant(stack)
    with httpx.Client(
        verify=ssl.create_default_context(cafile=stack.endpoints["caBundle"]),
        trust_env=False,
        timeout=30,
    ) as browser:
        connect_application(stack, api, anonymous, browser, BUILDING, tenant)
    ensure_building(api, f"{BUILDING}-scratch")
    resources, calendars = map_rooms(api, BUILDING, tenant, time_zone="Europe/Amsterdam")
    return Booked(BUILDING, tenant, resources, calendars)


@pytest.fixture(scope="module")
def target(stack: Stack, portal_token: str, bb: Booked) -> dict[str, Any]:
    """Where and as whom the generated requests go."""
    print(f"\nschemathesis seed {SEED} (replay: BB_SCHEMATHESIS_SEED={SEED})")
    return {
        "base_url": stack.endpoints["functionsBaseUrl"],
        "headers": {"Authorization": f"Bearer {portal_token}"},
    }


def test_the_served_description_is_the_one_tested(api: httpx.Client) -> None:
    response = api.get("openapi.json")
    assert response.status_code == 200, response.text
    assert response.json() == openapi_document()


DOC = openapi_document()
schema = schemathesis.openapi.from_dict(
    DOC,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "parameters": {"building": BUILDING},
            "request-timeout": 30,
            "checks": {"enabled": True},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
            },
            # No example database: the seed alone decides a run (no replay of an earlier one).
            "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
            "operations": [
                {"include-name": name, "parameters": {"building": f"{BUILDING}-scratch"}}
                for name in ON_SCRATCH_BUILDING
            ],
        }
    ),
)


def _valid_but_for_if_match(case: Any) -> bool:
    """A case meant as valid whose If-Match breaks the declared pattern: schemathesis 4.32 builds
    coverage header values from letters and digits only, so it cannot meet a pattern that needs
    quotes and drops it. The server's 400 for such a header is right; the label is not."""
    value = (case.headers or {}).get("If-Match")
    meta = case.meta
    return (
        value is not None
        and meta is not None
        and meta.generation.mode == schemathesis.GenerationMode.POSITIVE
        and re.fullmatch(etags.PATTERN, value) is None
    )


def _validated(case: Any, response: Any, validate: Any) -> None:
    """Run schemathesis' checks (`validate()`); fail on anything EXEMPT or GAPS does not allow."""
    try:
        validate()
    except FailureGroup as group:
        label = case.operation.label
        left = [
            f
            for f in group.exceptions
            if not (isinstance(f, RejectedPositiveData) and _exempt(label, response))
            and not _gap(case, response, f)
        ]
        if left:
            raise FailureGroup(left, str(group)) from None


@schema.parametrize()
def test_every_operation_answers_as_described(case: Any, target: dict[str, Any]) -> None:
    phase = getattr(case.meta, "phase", None)
    mutated = getattr(getattr(phase, "data", None), "parameter", None)
    if mutated == "building":
        # schemathesis 4.32 puts the configured building over a coverage case that varies the
        # building, then still expects a refusal: hostile building ids are walked by their own
        # test (every building-scoped route, 400/404), so such a case proves nothing here.
        return
    if _valid_but_for_if_match(case):
        return
    response = case.call(**target)
    _validated(
        case,
        response,
        lambda: case.validate_response(
            response, headers=target["headers"], transport_kwargs=target
        ),
    )


def test_links_create_read_update_delete(target: dict[str, Any]) -> None:
    """The OpenAPI links as a state machine: create (PUT/POST) then read, change, delete what the
    answer names, in generated orders, every answer checked as above."""

    answered: list[tuple[str, int]] = []

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # The state machine does not apply the configured parameters: the same buildings.
            if "building" in (case.path_parameters or {}):
                scratch = case.operation.label in ON_SCRATCH_BUILDING
                case.path_parameters["building"] = f"{BUILDING}-scratch" if scratch else BUILDING

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return target

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            answered.append((case.operation.label, response.status_code))

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            _validated(
                case,
                response,
                lambda: super(Links, self).validate_response(response, case, *args, **kwargs),
            )

    Links.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,  # the same scenarios every run: a failure reproduces
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
    # The links were followed: operations reached only through a link were called, with the
    # parameters the creating answer gave (a 404 there would still be checked as described).
    targets = {
        f"{link['operationRef'].rsplit('/', 1)[1].upper()} "
        + link["operationRef"].removeprefix("#/paths/").rsplit("/", 1)[0].replace("~1", "/")
        for item in openapi_document()["paths"].values()  # DOC: schemathesis adds links to it
        for operation in item.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    }
    followed = sorted({(label, status) for label, status in answered if label in targets})
    assert followed, sorted(set(answered))
    print(f"\nstate machine: {len(answered)} calls; through links: {followed}")


def test_read_links_of_a_create_find_what_it_made(api: httpx.Client, bb: Booked) -> None:
    """Every read (GET) link of these creates, followed from a create of the body's own example,
    finds what was created. Deterministic, where the state machine above only reaches a create
    that succeeds when its generated sequence happens to hold one (issue 22)."""
    # The served description: schemathesis rewrites the link parameters of the dict it was given.
    paths = api.get("openapi.json").json()["paths"]
    creates = [  # in order: a user names a company
        ("/buildings/{building}/resources/{resource}", {"resource": "links-room"}),
        ("/buildings/{building}/companies/{company}", {"company": "contoso"}),
        ("/buildings/{building}/users/{email}", {"email": "links@contoso.com"}),
    ]
    followed = []
    for template, ids in creates:
        operation = paths[template]["put"]
        request_path = {"building": BUILDING, **ids}
        body = operation["requestBody"]["content"]["application/json"]["example"]
        made = api.put(template.lstrip("/").format(**request_path), json=body)
        assert made.status_code in (200, 201), made.text
        for name, link in operation["responses"][str(made.status_code)]["links"].items():
            target_path, method = link["operationRef"].removeprefix("#/paths/").rsplit("/", 1)
            if method != "get":
                continue
            values = {
                param: request_path[source.removeprefix("$request.path.")]
                if source.startswith("$request.path.")
                else made.json()[source.removeprefix("$response.body#/")]
                for param, source in link["parameters"].items()
            }
            target = target_path.replace("~1", "/").replace("~0", "~")
            got = api.get(target.lstrip("/").format(**values))
            assert got.status_code == 200, (name, got.text)
            assert got.json() == made.json(), name
            followed.append(name)
    assert followed == ["GetResource", "GetCompany", "GetUser"]
