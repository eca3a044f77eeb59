"""Request-body validation that names every bad field at once (400 `ValidationFailed`).

A `Checker` collects `FieldError`s while a service reads a body; `done()` raises them all together,
so a caller fixes every problem in one round trip and nothing is written on a bad request.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from shared.core.addresses import normalise_email
from shared.core.errors import FieldError, ValidationFailed

ID_MAX = 64
NAME_MAX = 200
# Connect (shared/connect/flows.py), kept here so the OpenAPI description declares the same
# patterns. Application mode names one tenant (its id or a verified domain), never `organizations`/`common`:
# the id token's `tid` must equal the tenant the building admin asked for.
TENANT = re.compile(
    r"^([0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+)$"
)
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# An account as a service names it: a user principal name (`name@domain`) or an object id.
ACCOUNT = re.compile(r"^([^@\s]{1,113}@[A-Za-z0-9.-]{1,142}|" + GUID.pattern[1:-1] + ")$")
_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{ID_MAX}}}")


def valid_id(value: str) -> bool:
    """Ids chosen by the platform (buildings, resources, companies): 1–64 of `A-Za-z0-9._-`.

    "." and ".." are refused: URL normalisation would turn them into other paths.
    """
    return bool(_ID.fullmatch(value)) and value.strip(".") != ""


class Checker:
    """Reads fields of one JSON object and remembers every problem."""

    def __init__(self, body: Mapping[str, Any] | None = None, prefix: str = "") -> None:
        self.body: Mapping[str, Any] = body or {}
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(FieldError(self.prefix + field, message))

    def done(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def only(self, allowed: Collection[str], read_only: Collection[str] = ()) -> None:
        """Refuse unknown fields (a typo must not silently reset a setting to its default).

        `read_only` fields are what our GET returns besides the writable ones, so a client can
        send back what it read.
        """
        for name in self.body:
            if name not in allowed and name not in read_only:
                self.add(name, "is not a known field")

    def path_id(self, field: str, value: str) -> str:
        if not valid_id(value):
            self.add(field, f"must be 1–{ID_MAX} characters of A-Z a-z 0-9 . _ -")
        return value

    def name(self, field: str = "name", *, required: bool = True) -> str:
        value = self.body.get(field)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.add(field, "is required")
            return ""
        value = value.strip()
        if len(value) > NAME_MAX or not value.isprintable():
            self.add(field, f"must be at most {NAME_MAX} printable characters")
        return value

    def boolean(self, field: str, default: bool) -> bool:
        value = self.body.get(field, default)
        if not isinstance(value, bool):
            self.add(field, "must be true or false")
            return default
        return value

    def integer(
        self, field: str, *, minimum: int, maximum: int, nullable: bool = True
    ) -> int | None:
        value = self.body.get(field)
        if value is None and nullable:
            return None
        # The contract is JSON Schema's "integer": 8.0 is one (a client that computes in floats
        # sends it), 8.5 is not; bool is an int in Python but not in JSON.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            self.add(
                field,
                f"must be an integer from {minimum} to {maximum}"
                + (" or null" if nullable else ""),
            )
            return None
        return value

    def choice(self, field: str, options: Collection[str]) -> str:
        value = self.body.get(field)
        if value not in options:
            self.add(field, "must be one of " + ", ".join(sorted(options)))
            return ""
        return str(value)

    def email(self, field: str, value: Any, *, nullable: bool = False) -> str | None:
        """A normalised address from `value` (a body field's value or a path segment)."""
        if value is None and nullable:
            return None
        if value is None or value == "":
            self.add(field, "is required")  # missing is not malformed: say which one it is
            return None
        address = normalise_email(value) if isinstance(value, str) else None
        if address is None:
            self.add(field, "must be an email address")
        return address


def check_path(**ids: str) -> None:
    """Ids from the route (`building`, `resourceId`, ...), or one 400 naming each bad one.

    Validated before any storage call: a building id is a PartitionKey everywhere, and a key the
    service refuses would otherwise surface as a storage failure instead of a 400.
    """
    checker = Checker()
    for field, value in ids.items():
        checker.path_id(field, value)
    checker.done()


def check_building(building_id: str) -> str:
    """A building id from the route (it is a PartitionKey everywhere), or 400."""
    check_path(building=building_id)
    return building_id


# Every path parameter of the API, by its name in the route templates, and the field a 400 names
# (the services' own names for them). All are platform or server ids (`valid_id`) except `email`.
ROUTE_IDS: dict[str, str] = {
    "building": "building",
    "resource": "resourceId",
    "company": "companyId",
    "booking": "bookingId",
    "check": "checkId",
    "webhook": "webhookId",
    "delivery": "deliveryId",
    "record": "recordId",
    "email": "email",
}


def check_route(params: Mapping[str, str]) -> None:
    """Every id of a request's route, or one 400 naming each bad one: the one check every
    authenticated route runs (functions/http.py `caller_for`) before any storage call.

    A parameter this table does not know is refused too: a new route must say what its ids are.
    """
    checker = Checker()
    for name, value in params.items():
        field = ROUTE_IDS.get(name)
        if field is None:
            checker.add(name, "is not a known path parameter")
        elif name == "email":
            checker.email(field, value)
        else:
            checker.path_id(field, value)
    checker.done()
