"""The Microsoft Graph permissions BookingBridge asks for: one list, used by the connect flow and
checked against infra/graph-permissions.json (the app registration) by tests/unit/test_infra.py.

Delegated (GRAPH.md §2.1–2.2):
- `User.Read` — who connected (`GET /me`).
- `Calendars.Read` — requested explicitly next to ReadWrite: Graph subscriptions refuse write
  scopes where a read scope is needed (GRAPH.md §2.2, pitfall 5).
- `Calendars.ReadWrite` — write bookings to the account's own calendars.
- `Calendars.ReadWrite.Shared` — calendars shared with or delegated to the account.
- `Place.Read.All` — rooms and room lists; admin-consent only, so it is optional: a connection
  works without it (the granted scopes say whether the Places API can be used).

A free/busy-only connection (`access: "freeBusy"`, issue 19) asks for less: delegated
`User.Read`, `Calendars.ReadBasic` (getSchedule's least privileged permission: the API page's
permissions include) and `Place.Read.All`; Exchange then shows it only what the mailboxes' folder
permissions allow (AvailabilityOnly: status, start and end). Application mode cannot ask for less
than the registration holds: `/.default` consents to all of GRAPH_APPLICATION_PERMISSIONS (DESIGN.md
"Free/busy-only connections"), so a free/busy application connection limits what BookingBridge
does, not what the tenant grants.

`openid profile offline_access` are OpenID Connect scopes: they go on the authorize URL, but MSAL
adds them to token requests itself and refuses them as "reserved" if passed (GRAPH.md §1.10).
"""

from __future__ import annotations

GRAPH_RESOURCE = "https://graph.microsoft.com"

OIDC_SCOPES: tuple[str, ...] = ("openid", "profile", "offline_access")

# The one list of delegated Graph scopes we request (short names: Entra assumes Graph for them).
GRAPH_DELEGATED_SCOPES: tuple[str, ...] = (
    "User.Read",
    "Calendars.Read",
    "Calendars.ReadWrite",
    "Calendars.ReadWrite.Shared",
    "Place.Read.All",
)

# Without these a delegated connection cannot do its job: connect ends with `insufficient_scope`.
REQUIRED_DELEGATED_SCOPES: frozenset[str] = frozenset(
    {"User.Read", "Calendars.Read", "Calendars.ReadWrite"}
)

# A free/busy-only delegated connection's request (`access: "freeBusy"`), and what it cannot lack.
FREE_BUSY_DELEGATED_SCOPES: tuple[str, ...] = ("User.Read", "Calendars.ReadBasic", "Place.Read.All")
REQUIRED_FREE_BUSY_SCOPES: frozenset[str] = frozenset({"User.Read", "Calendars.ReadBasic"})
# Any of these lets getSchedule answer (delegated scopes or application roles).
SCHEDULE_READERS: frozenset[str] = frozenset(
    {"Calendars.ReadBasic", "Calendars.ReadBasic.All", "Calendars.Read", "Calendars.ReadWrite"}
)

# Application permissions an admin consents to (`/.default` = everything on the registration).
GRAPH_APPLICATION_PERMISSIONS: tuple[str, ...] = (
    "Calendars.Read",
    "Calendars.ReadWrite",
    "Place.Read.All",
)

GRAPH_DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"


def short_scope(scope: str) -> str:
    """`https://graph.microsoft.com/Calendars.Read` → `Calendars.Read` (Entra returns either)."""
    prefix = GRAPH_RESOURCE + "/"
    return scope[len(prefix) :] if scope.lower().startswith(prefix) else scope


def granted_graph_scopes(scope_field: str | None) -> frozenset[str]:
    """The Graph scopes a token response says were granted, without OIDC scopes."""
    names = {short_scope(s) for s in (scope_field or "").split()}
    return frozenset(n for n in names if n and n not in OIDC_SCOPES and n != "email")
