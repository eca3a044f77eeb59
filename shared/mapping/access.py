"""What a building's connection reaches, for discovery and mapping alike: its state (connected,
or 422 why not), the account's own mailbox, Graph's refusals as mapping reasons, and whether a
mailbox is a room."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import quote

from shared.core.errors import GraphError, IdentityError, Unprocessable

if TYPE_CHECKING:
    from shared.core.connection import Connection
    from shared.graph.client import GraphClient

CalendarKind = Literal["room", "personal", "shared"]
PLACES_SCOPE = "Place.Read.All"
GONE = frozenset({"ErrorItemNotFound", "ErrorInvalidUser", "Request_ResourceNotFound"})


class ConnectionSource(Protocol):
    def get(self, building_id: str) -> Connection | None: ...


def connected(connections: ConnectionSource, building_id: str) -> Connection:
    """The building's connection, or 422 `not_connected` / `reauth_required`."""
    connection = connections.get(building_id)
    if connection is None or connection.status in ("disconnected", "error"):
        raise Unprocessable(
            "The building is not connected to Microsoft 365", reason="not_connected"
        )
    if connection.status == "reauth_required":
        raise Unprocessable(
            "The connection to Microsoft 365 needs an administrator to reconnect",
            reason="reauth_required",
        )
    return connection


def account_mailbox(connection: Connection) -> str | None:
    account = connection.account
    if connection.mode != "delegated" or account is None:
        return None
    name = account.mail or account.user_principal_name
    return name.lower() if name else None


def reauth(err: IdentityError) -> Unprocessable:
    return Unprocessable(
        "The connection to Microsoft 365 needs an administrator to reconnect",
        reason="reauth_required" if err.error != "not_connected" else "not_connected",
    )


def users_path(mailbox: str, suffix: str = "") -> str:
    return f"/users/{quote(mailbox, safe='@')}{suffix}"


def graph_reason(err: GraphError) -> str | None:
    """A Graph refusal as a mapping reason; None for failures that are not about the calendar."""
    status, code = err.failure.status, err.failure.code
    if status == 404 or code in GONE or (status == 400 and "Id" in code):
        return "calendar_not_found"
    if status == 403:
        return "access_denied"
    if status == 401:
        return "reauth_required"
    return None


def is_room(graph: GraphClient, connection: Connection, mailbox: str, actor: str) -> bool:
    """Whether the Places API knows the mailbox as a room (False when it may not be asked)."""
    if PLACES_SCOPE not in connection.scopes:
        return False
    try:
        place = graph.get_json(
            connection, f"/places/{quote(mailbox, safe='@')}", operation="places.read", actor=actor
        )
    except GraphError:
        return False
    return (
        "room" in str(place.get("@odata.type", "")).lower()
        and "roomlist" not in str(place.get("@odata.type", "")).lower()
    )
