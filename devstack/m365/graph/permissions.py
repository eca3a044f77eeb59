"""Who is calling and what they may do: token → `Caller`, then Graph's permission rules.

- Tokens are checked by the token service (signature, audience, expiry, revocation); any failure is
  401 `InvalidAuthenticationToken`.
- Delegated (`scp`): own mailbox with Calendars.Read*/ReadWrite*; another mailbox only through a
  calendar share and a `.Shared` scope (403 `ErrorAccessDenied` otherwise).
- Application (`roles`): tenant-wide roles ∪ Exchange RBAC for Applications roles on the mailbox
  (additive, as Exchange does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import GraphError, access_denied, unauthenticated
from .model import Mailbox
from .store import WRITE_ROLES, GraphState

GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")

OWN_READ = frozenset(
    {
        "Calendars.ReadBasic",
        "Calendars.Read",
        "Calendars.ReadWrite",
        "Calendars.Read.Shared",
        "Calendars.ReadWrite.Shared",
    }
)
OWN_WRITE = frozenset({"Calendars.ReadWrite", "Calendars.ReadWrite.Shared"})
SHARED_READ = frozenset({"Calendars.Read.Shared", "Calendars.ReadWrite.Shared"})
SHARED_WRITE = frozenset({"Calendars.ReadWrite.Shared"})
APP_READ = frozenset({"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic.All"})
APP_WRITE = frozenset({"Calendars.ReadWrite"})
READ_SHARE_ROLES = frozenset({"read", *WRITE_ROLES})

_401_MESSAGES = {
    "malformed": "IDX14100: JWT is not well formed.",
    "bad_signature": "Signature validation failed.",
    "expired": "Lifetime validation failed, the token is expired.",
    "not_yet_valid": "Lifetime validation failed, the token is not yet valid.",
    "wrong_audience": "Invalid audience.",
    "wrong_issuer": "Invalid issuer.",
    "unknown_tenant": "Invalid tenant.",
    "revoked": "Access token has been revoked.",
}


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    client_id: str
    user_id: str | None  # None for application tokens
    scopes: frozenset[str]
    roles: frozenset[str]
    expires: int
    upn: str = ""

    @property
    def is_app(self) -> bool:
        return self.user_id is None


def authenticate(state: GraphState, authorization: str | None) -> Caller:
    if not authorization:
        raise unauthenticated("Access token is empty.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Access token validation failure. Invalid audience.")
    from devstack.m365.tokens import InvalidToken

    try:
        claims: dict[str, Any] = state.emulator.tokens.verify(token.strip(), GRAPH_AUDIENCES)
    except InvalidToken as exc:
        raise unauthenticated(
            _401_MESSAGES.get(exc.reason, "Access token validation failure.")
        ) from None
    scp = claims.get("scp")
    roles = claims.get("roles") or []
    client = str(claims.get("azp") or claims.get("appid") or "")
    tid = str(claims.get("tid", ""))
    if scp:
        user_id = str(claims.get("oid", ""))
        return Caller(
            tid,
            client,
            user_id,
            frozenset(str(scp).split()),
            frozenset(),
            int(claims.get("exp", 0)),
            str(claims.get("preferred_username") or claims.get("upn") or ""),
        )
    return Caller(
        tid, client, None, frozenset(), frozenset(str(r) for r in roles), int(claims.get("exp", 0))
    )


def app_permissions(state: GraphState, caller: Caller, mb: Mailbox) -> frozenset[str]:
    rbac = state.directory.rbac_permissions(caller.tenant_id, caller.client_id, mb.user_id)
    return caller.roles | frozenset(rbac)


def calendar_access(
    state: GraphState, caller: Caller, mb: Mailbox, calendar_id: str | None, *, write: bool
) -> set[str] | None:
    """Calendars of `mb` the caller may read/write (None = all); 403 when none.

    `calendar_id` narrows the question to one calendar of the mailbox.
    """
    if caller.tenant_id != mb.tenant_id:
        raise access_denied()
    if caller.is_app:
        if not app_permissions(state, caller, mb) & (APP_WRITE if write else APP_READ):
            raise access_denied()
        return None
    if caller.user_id == mb.user_id:
        if not caller.scopes & (OWN_WRITE if write else OWN_READ):
            raise access_denied()
        return None
    allowed_roles = WRITE_ROLES if write else READ_SHARE_ROLES
    cals = {
        cid
        for cid in mb.calendars
        if state.share_role(mb, cid, caller.user_id or "") in allowed_roles
    }
    if calendar_id is not None:
        cals &= {calendar_id}
    if not cals or not caller.scopes & (SHARED_WRITE if write else SHARED_READ):
        raise access_denied()
    return cals


def require_read_any(state: GraphState, caller: Caller, mb: Mailbox | None = None) -> None:
    """getSchedule: Calendars.Read (delegated or application) or higher."""
    if caller.is_app:
        perms = app_permissions(state, caller, mb) if mb else caller.roles
        if not perms & APP_READ:
            raise access_denied()
    elif not caller.scopes & OWN_READ:
        raise access_denied()


def require_places(caller: Caller) -> None:
    if "Place.Read.All" not in (caller.roles if caller.is_app else caller.scopes):
        raise access_denied()


def require_user_read(caller: Caller, target_user_id: str) -> None:
    if caller.is_app:
        if not caller.roles & {"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"}:
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        return
    if caller.user_id == target_user_id and caller.scopes & {
        "User.Read",
        "User.ReadBasic.All",
        "User.Read.All",
        "Directory.Read.All",
    }:
        return
    if caller.scopes & {"User.ReadBasic.All", "User.Read.All", "Directory.Read.All"}:
        return
    raise GraphError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


def require_subscription_scope(
    state: GraphState, caller: Caller, mb: Mailbox | None, operation: str
) -> None:
    """Subscriptions on events need a *read* permission.

    Delegated: `Calendars.Read` itself; a token with only `Calendars.ReadWrite` is refused (Graph:
    "will not support write access permissions where only read access privileges are needed").
    Application: Calendars.Read or Calendars.ReadWrite, tenant-wide or by RBAC on the mailbox.
    """
    if caller.is_app:
        perms = app_permissions(state, caller, mb) if mb else caller.roles
        ok = bool(perms & {"Calendars.Read", "Calendars.ReadWrite"})
    else:
        ok = "Calendars.Read" in caller.scopes
    if not ok:
        raise extension_forbidden(operation)


def extension_forbidden(operation: str) -> GraphError:
    return GraphError(
        403,
        "ExtensionError",
        f"Operation: {operation}; Exception: [Status Code: Forbidden; Reason: Access is denied. "
        "Check credentials and try again.]",
    )
