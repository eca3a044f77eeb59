"""Connecting a building to Microsoft 365: the connect flows, connection status, disconnect.

Two modes (ARCHITECTURE.md §1.1):
- delegated: authorization code + PKCE + nonce, refresh token in Key Vault (`conn-<building>`);
- application: an administrator of the tenant consents for the organization, then client
  credentials for the tenant (no stored secret).

Application mode must prove that an administrator *of the tenant asked for* consented *in this flow*.
The v2 admin consent endpoint cannot: its answer (`admin_consent=True&tenant=T`) is a query string
anyone can type, and a client-credentials token for T only shows that some admin of T consented at
some time — for example for another customer's building — so a building admin could connect their
building to any tenant that ever consented (GRAPH.md pitfall 17). So application mode is an OpenID
Connect authorization-code flow with `prompt=admin_consent` on `/{tenant id}/oauth2/v2.0/authorize`
(scopes `openid profile https://graph.microsoft.com/.default`; Entra completes it only for a tenant
administrator and records tenant-wide consent for everything the registration requires):
1. `start_connect` resolves a verified domain to its tenant id (the tenant's OpenID configuration
   `issuer`), records the flow with that id, and binds state + PKCE + nonce exactly as delegated;
2. the callback (`GET /oauth/adminconsent`, the registered redirect URI) redeems the code with the
   flow's PKCE verifier (a code from any other flow fails) and checks the id token: `aud` our
   client, `iss` of its own `tid`, `nonce` of this flow, `tid` == the tenant asked for;
3. only then a client-credentials token for that tenant (its `roles` are shown as the scopes);
4. the connection is recorded. The code's tokens are the admin's delegated tokens: never used,
   never stored (MSAL's cache is disabled; a refresh token Entra may return is dropped).
A callback in the v2 admin consent shape (no `code`) is refused with reason `consent_unverifiable`.

One connection per building (`connections` table, PartitionKey building, RowKey `current`); a tenant
may serve many buildings. Flow state lives in `oauthflows` (PartitionKey flowId) with only non-secret
data; the PKCE verifier and the nonce are HMACs of the Key Vault flow key (shared/storage/keyvault.py,
`ConnectDeps.flow_keys`).
A flow is single-use (deleted with If-Match its ETag: only one callback wins), expires after
`FLOW_TTL` on *our* clock, and is bound to the building and the admin who started it.

A flow is also bound to the *account* that may finish it (`Expected`): an authorize link is a
URL anyone can open, and a colleague who consented before signs in without a single question, so
without the binding a building admin could connect their building to a richer mailbox than their
own and read it (issue 21). A Building.Admin caller connects their own account: the id token's
`oid`/`tid` must be the caller's. A Portal.Service caller (a backend acting for someone) must
name the account (`expectedAccount`, else `loginHint`): its user principal name or object id.
Any other account ends the flow with `account_mismatch`, before anything is stored; the code's
tokens are dropped. Success and refusal are audited with both identities (`connect` records).

Services take their collaborators in `ConnectDeps`; `default_deps()` builds the process's set.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import secrets as pysecrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.connect.tokens import Identity, TokenProvider, TokenResult, codes_in, reason_for
from shared.core.errors import (
    BookingBridgeError,
    DependencyError,
    FieldError,
    IdentityError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from shared.core.settings import Settings, origin_of
from shared.core.validate import check_building
from shared.directory.registry import is_mapped
from shared.graph.audit import AuditEntry
from shared.graph.permissions import (
    GRAPH_DEFAULT_SCOPE,
    GRAPH_DELEGATED_SCOPES,
    OIDC_SCOPES,
    REQUIRED_DELEGATED_SCOPES,
)
from shared.storage import tablestore
from shared.storage.keyvault import (
    SecretStore,
    VersionedKeys,
    connection_secret_name,
    oidc_nonce,
    pkce_challenge,
    pkce_verifier,
)

if TYPE_CHECKING:
    import httpx
    from azure.data.tables import TableClient

    from shared.api.auth import Caller

logger = logging.getLogger(__name__)

CONNECTIONS_TABLE = tablestore.CONNECTIONS
FLOWS_TABLE = tablestore.OAUTH_FLOWS
FLOW_TTL = timedelta(minutes=10)
KEEPALIVE_AFTER = timedelta(days=7)  # well inside Entra's 90-day refresh-token inactivity limit
MODES = ("delegated", "application")
STATUSES = ("connected", "reauth_required", "disconnected", "error")
# Application mode names one tenant (its id or a verified domain), never `organizations`/`common`:
# the id token's `tid` must equal the tenant the building admin asked for.
_TENANT = re.compile(
    r"^([0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+)$"
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# An account as a service names it: a user principal name (`name@domain`) or an object id.
_ACCOUNT = re.compile(r"^([^@\s]{1,113}@[A-Za-z0-9.-]{1,142}|" + _GUID.pattern[1:-1] + ")$")
# The application connect's sign-in: OIDC (id token, no `offline_access`: no refresh token wanted)
# plus `/.default` (static consent to everything the registration requires, delegated and
# application). OIDC scopes may accompany `/.default`; named Graph scopes may not (scopes-oidc.md).
ADMIN_CONSENT_SCOPES: tuple[str, ...] = ("openid", "profile", GRAPH_DEFAULT_SCOPE)
_MAX_URL = 2048


# ---------------------------------------------------------------- domain


@dataclass(frozen=True)
class Account:
    id: str
    display_name: str | None
    mail: str | None
    user_principal_name: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "mail": self.mail,
            "userPrincipalName": self.user_principal_name,
        }


@dataclass(frozen=True)
class Connection:
    building_id: str
    connection_id: str  # new per connect: audit records and in-process caches key on it
    mode: str
    status: str
    tenant_id: str
    account: Account | None = None
    scopes: frozenset[str] = frozenset()
    reason: str | None = None
    connected_at: datetime | None = None
    last_refresh_at: datetime | None = None
    connected_by: str | None = None
    secret_name: str = ""

    def to_api(self) -> dict[str, Any]:
        """The `GET /buildings/{b}/connection` shape (API.md)."""
        return {
            "status": self.status,
            "mode": self.mode,
            "account": self.account.to_json() if self.account else None,
            "tenantId": self.tenant_id or None,
            "scopes": sorted(self.scopes),
            "connectedAt": _iso(self.connected_at),
            "lastRefreshAt": _iso(self.last_refresh_at),
            "reason": self.reason,
        }


DISCONNECTED: dict[str, Any] = {
    "status": "disconnected",
    "mode": None,
    "account": None,
    "tenantId": None,
    "scopes": [],
    "connectedAt": None,
    "lastRefreshAt": None,
    "reason": None,
}


@dataclass(frozen=True)
class Expected:
    """Who may finish a flow (module docstring): the starting admin's own account (`oid` + `tid`),
    or the account a service named (`account`: a user principal name or an object id)."""

    oid: str | None = None
    tid: str | None = None
    account: str | None = None

    def matches(self, claims: Mapping[str, Any]) -> bool:
        oid = str(claims.get("oid") or "").lower()
        if self.oid is not None and (
            oid != self.oid.lower() or str(claims.get("tid") or "").lower() != str(self.tid).lower()
        ):
            return False
        if self.account is None:
            return self.oid is not None  # an unbound flow (none are made) matches nobody
        names = {oid} | {
            str(claims.get(name) or "").lower() for name in ("preferred_username", "upn", "email")
        }
        return self.account.lower() in names - {""}

    def describe(self) -> str:
        """For logs and audit: ids and the named account, nothing else."""
        if self.oid is not None:
            return f"{self.oid}@{self.tid}" + (f" as {self.account}" if self.account else "")
        return str(self.account)


@dataclass(frozen=True)
class Flow:
    flow_id: str
    building_id: str
    caller: str
    mode: str
    return_url: str
    expires_at: datetime
    key_version: str
    expected: Expected
    tenant: str | None = None  # application mode: the tenant id (GUID) an admin must consent in


class ConnectFailed(Exception):
    """A connect attempt ended without a connection; `reason` goes to the return URL."""

    def __init__(self, reason: str, *, record: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


class AccountMismatch(ConnectFailed):
    """Someone other than the flow's expected account signed in (module docstring). Nothing of
    the attempt is kept: no connection change, no error shown on the building."""

    def __init__(self, signed_in: str) -> None:
        super().__init__("account_mismatch", record=False)
        self.signed_in = signed_in


def signed_in_account(claims: Mapping[str, Any]) -> str:
    """How audit records name the account that signed in: its name (if any) and ids."""
    name = claims.get("preferred_username") or claims.get("upn") or ""
    ids = f"{claims.get('oid')}@{claims.get('tid')}"
    return f"{name} ({ids})" if name else ids


def check_account(flow: Flow, claims: Mapping[str, Any]) -> None:
    if not flow.expected.matches(claims):
        logger.warning(
            "connect of building %s refused: %s signed in, the flow is for %s",
            flow.building_id, signed_in_account(claims), flow.expected.describe(),
        )  # fmt: skip
        raise AccountMismatch(signed_in_account(claims))


# ---------------------------------------------------------------- pure helpers


def validate_return_url(value: Any, origins: tuple[str, ...]) -> str:
    """The return URL if its origin is allow-listed (exact origin match), else a 400 on returnUrl."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed([FieldError("returnUrl", "is required")])
    url = value.strip()
    if len(url) > _MAX_URL:
        raise ValidationFailed([FieldError("returnUrl", "is too long")])
    parts = urlsplit(url)
    origin = origin_of(url)
    # userinfo (`https://good@evil`) and backslashes are how allow-lists get fooled.
    if (
        origin is None
        or origin not in origins
        or parts.username is not None
        or "\\" in url
        or any(ord(c) < 0x21 for c in url)
    ):
        raise ValidationFailed([FieldError("returnUrl", "origin is not allow-listed")])
    return url


def with_status(return_url: str, status: str, reason: str | None = None) -> str:
    """The return URL with `status` (and `reason`) added to its query, fragment kept."""
    parts = urlsplit(return_url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("status", "reason")
    ]  # fmt: skip
    query.append(("status", status))
    if reason:
        query.append(("reason", reason))
    return urlunsplit(parts._replace(query=urlencode(query)))


def missing_scopes(granted: frozenset[str]) -> frozenset[str]:
    return frozenset(REQUIRED_DELEGATED_SCOPES - granted)


def check_id_claims(
    claims: Mapping[str, Any], *, client_id: str, authority_host: str, nonce: str
) -> None:
    """What MSAL does not check for us: audience, issuer of the token's own tenant, tid, oid, and
    the flow's nonce (MSAL skips its nonce check when no id token came back)."""
    tid = str(claims.get("tid") or "")
    if not _GUID.match(tid) or not claims.get("oid"):
        raise ConnectFailed("invalid_id_token")
    if claims.get("aud") != client_id:
        raise ConnectFailed("invalid_id_token")
    if claims.get("iss") != f"{authority_host.rstrip('/')}/{tid}/v2.0":
        raise ConnectFailed("invalid_id_token")
    if not hmac.compare_digest(str(claims.get("nonce") or "").encode(), nonce.encode()):
        raise ConnectFailed("nonce_mismatch")


def check_admin_consent_claims(
    claims: Mapping[str, Any], *, client_id: str, authority_host: str, tenant_id: str, nonce: str
) -> None:
    """The id token of an application connect: issued to us, for this flow, in the tenant asked for.

    Entra completes `prompt=admin_consent` only for an administrator of the tenant signed in to,
    so a valid id token of this flow (`nonce`) whose `tid` is the requested tenant proves that an
    administrator of that tenant consented in this flow.
    """
    check_id_claims(claims, client_id=client_id, authority_host=authority_host, nonce=nonce)
    if str(claims["tid"]).lower() != tenant_id.lower():
        raise ConnectFailed("tenant_mismatch")


def tenant_id_from_issuer(issuer: str, authority_host: str) -> str | None:
    """The tenant id in an OpenID configuration's `issuer` (`{authority}/{tid}/v2.0`), else None."""
    prefix, suffix = authority_host.rstrip("/") + "/", "/v2.0"
    if not issuer.startswith(prefix) or not issuer.endswith(suffix):
        return None
    tid = issuer[len(prefix) : -len(suffix)]
    return tid.lower() if _GUID.match(tid) else None


def _authorize_url(
    settings: Settings,
    *,
    tenant: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    state: str,
    challenge: str,
    nonce: str,
    login_hint: str | None,
    prompt: str | None = None,
) -> str:
    params = {
        "client_id": settings.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "response_mode": "query",
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if prompt:
        params["prompt"] = prompt
    if login_hint:
        params["login_hint"] = login_hint
    return f"{settings.authority_host}/{tenant}/oauth2/v2.0/authorize?{urlencode(params)}"


def authorize_url(
    settings: Settings, *, state: str, challenge: str, nonce: str, login_hint: str | None
) -> str:
    # `organizations`: work and school accounts of any tenant (calendars need Exchange Online).
    return _authorize_url(
        settings, tenant="organizations", redirect_uri=callback_uri(settings),
        scopes=(*OIDC_SCOPES, *GRAPH_DELEGATED_SCOPES), state=state, challenge=challenge,
        nonce=nonce, login_hint=login_hint,
    )  # fmt: skip


def admin_authorize_url(
    settings: Settings,
    *,
    tenant_id: str,
    state: str,
    challenge: str,
    nonce: str,
    login_hint: str | None,
) -> str:
    """The application connect's sign-in: an administrator of `tenant_id` consents for it.

    The tenant id in the path makes Entra sign the admin in to that tenant (`tid` of the id
    token); the redirect URI stays `/oauth/adminconsent` (registered, and API.md's path).
    """
    return _authorize_url(
        settings, tenant=tenant_id, redirect_uri=admin_consent_uri(settings),
        scopes=ADMIN_CONSENT_SCOPES, state=state, challenge=challenge, nonce=nonce,
        login_hint=login_hint, prompt="admin_consent",
    )  # fmt: skip


def discover_tenant_id(http: httpx.Client, authority_host: str, domain: str) -> str | None:
    """The id of the tenant owning a verified domain, from its OpenID configuration; None if
    Entra knows no such tenant (400 AADSTS90002)."""
    import httpx

    url = f"{authority_host.rstrip('/')}/{domain}/v2.0/.well-known/openid-configuration"
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise _discovery_failed(type(exc).__name__) from exc
    if response.status_code in (400, 404):
        return None
    issuer = None
    if response.status_code == 200:
        with contextlib.suppress(ValueError, AttributeError):
            issuer = response.json().get("issuer")
    tid = tenant_id_from_issuer(str(issuer or ""), authority_host)
    if tid is None:
        raise _discovery_failed(f"{response.status_code}, issuer {issuer!r}")
    return tid


def _discovery_failed(detail: str) -> DependencyError:
    return DependencyError(
        "The Microsoft identity platform is unavailable; try again",
        reason="identity_unavailable", log_detail=f"tenant discovery: {detail}",
    )  # fmt: skip


def _no_tenant_discovery(domain: str) -> str | None:
    raise _discovery_failed("no resolver configured (ConnectDeps.resolve_tenant)")


def callback_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/oauth/callback"


def admin_consent_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/oauth/adminconsent"


# ---------------------------------------------------------------- storage
# Keys: the building id is the PartitionKey as-is (validated by shared.core.validate.check_building,
# exactly as shared/directory/registry.py does), the flow id is URL-safe base64.


def _storage_error(action: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    return StorageError(
        "Storage is unavailable", reason="storage",
        log_detail=f"{action}: {type(exc).__name__} {getattr(exc, 'status_code', '')}",
    )  # fmt: skip


class ConnectionRepository:
    """The `connections` table: one row per building. No secrets in here, ever."""

    def __init__(self, table: Callable[[], TableClient]) -> None:
        self._table = table

    def get(self, building_id: str) -> Connection | None:
        entity = self._get_entity(building_id)
        return None if entity is None else _connection_from(entity)

    def _get_entity(self, building_id: str) -> Any:
        return tablestore.get_entity(self._table(), building_id, "current")

    def save(self, connection: Connection) -> None:
        try:
            self._table().upsert_entity(_entity_of(connection), mode=_replace_mode())
        except Exception as exc:
            raise _storage_error("save connection", exc) from exc

    def delete(self, building_id: str) -> None:
        try:
            self._table().delete_entity(building_id, "current")
        except Exception as exc:
            raise _storage_error("delete connection", exc) from exc

    def mark_refreshed(self, building_id: str, connection_id: str, when: datetime) -> None:
        self._update_if_same(building_id, connection_id, {"lastRefreshAt": when})

    def mark_reauth(self, building_id: str, connection_id: str, reason: str) -> None:
        self._update_if_same(
            building_id, connection_id, {"status": "reauth_required", "reason": reason}
        )

    def _update_if_same(
        self, building_id: str, connection_id: str, changes: dict[str, Any]
    ) -> None:
        """Merge `changes` only into the same connection (a reconnect may have replaced it)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = self._get_entity(building_id)
        if entity is None or entity.get("connectionId") != connection_id:
            return
        try:
            self._table().update_entity(
                {"PartitionKey": building_id, "RowKey": "current", **changes},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            logger.info("connection of %s changed while updating; left as is", building_id)
        except Exception as exc:
            raise _storage_error("update connection", exc) from exc

    def all(self) -> Iterator[Connection]:
        try:
            for entity in self._table().query_entities("RowKey eq 'current'"):
                yield _connection_from(entity)
        except Exception as exc:
            raise _storage_error("list connections", exc) from exc


class FlowRepository:
    """The `oauthflows` table: short-lived, single-use connect flows."""

    def __init__(self, table: Callable[[], TableClient]) -> None:
        self._table = table

    def add(self, flow: Flow) -> None:
        entity = {
            "PartitionKey": flow.flow_id,
            "RowKey": "flow",
            "building": flow.building_id,
            "caller": flow.caller,
            "mode": flow.mode,
            "returnUrl": flow.return_url,
            "expiresAt": flow.expires_at,
            "keyVersion": flow.key_version,
            "tenant": flow.tenant or "",
            "expectedOid": flow.expected.oid or "",
            "expectedTid": flow.expected.tid or "",
            "expectedAccount": flow.expected.account or "",
        }
        try:
            self._table().create_entity(entity)
        except Exception as exc:
            raise _storage_error("create flow", exc) from exc

    def take(self, flow_id: str) -> Flow | None:
        """Read and delete a flow; None if absent or if another callback deleted it first."""
        table = self._table()
        entity = tablestore.get_entity(table, flow_id, "flow")
        if entity is None:
            return None
        try:
            if not tablestore.delete_if_unchanged(table, entity):
                return None  # a concurrent callback won: this one is a replay
        except NotFound:
            return None
        return Flow(
            flow_id=flow_id,
            building_id=str(entity["building"]),
            caller=str(entity["caller"]),
            mode=str(entity["mode"]),
            return_url=str(entity["returnUrl"]),
            expires_at=tablestore.stored_time(entity["expiresAt"]),
            key_version=str(entity["keyVersion"]),
            expected=Expected(
                oid=str(entity.get("expectedOid") or "") or None,
                tid=str(entity.get("expectedTid") or "") or None,
                account=str(entity.get("expectedAccount") or "") or None,
            ),
            tenant=str(entity.get("tenant") or "") or None,
        )

    def delete_expired(self, now: datetime) -> int:
        """Flows nobody completed (Table Storage has no TTL). Run by the keep-alive timer."""
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        removed = 0
        try:
            table = self._table()
            for entity in table.query_entities(
                f"expiresAt lt datetime'{stamp}'", select=["PartitionKey", "RowKey"]
            ):  # a cross-partition scan, but a daily one over a table of minutes-old rows
                table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                removed += 1
        except Exception as exc:
            raise _storage_error("sweep flows", exc) from exc
        return removed


def _replace_mode() -> Any:
    from azure.data.tables import UpdateMode

    return UpdateMode.REPLACE


def _entity_of(c: Connection) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": c.building_id,
        "RowKey": "current",
        "connectionId": c.connection_id,
        "mode": c.mode,
        "status": c.status,
        "tenantId": c.tenant_id,
        "account": json.dumps(c.account.to_json()) if c.account else "",
        "scopes": " ".join(sorted(c.scopes)),
        "reason": c.reason or "",
        "connectedBy": c.connected_by or "",
        "secretName": c.secret_name,
    }
    if c.connected_at:
        entity["connectedAt"] = c.connected_at
    if c.last_refresh_at:
        entity["lastRefreshAt"] = c.last_refresh_at
    return entity


def _connection_from(e: Mapping[str, Any]) -> Connection:
    account = None
    if e.get("account"):
        raw = json.loads(str(e["account"]))
        account = Account(
            id=str(raw.get("id") or ""),
            display_name=raw.get("displayName"),
            mail=raw.get("mail"),
            user_principal_name=raw.get("userPrincipalName"),
        )
    return Connection(
        building_id=str(e["PartitionKey"]),
        connection_id=str(e.get("connectionId") or ""),
        mode=str(e.get("mode") or ""),
        status=str(e.get("status") or "error"),
        tenant_id=str(e.get("tenantId") or ""),
        account=account,
        scopes=frozenset(str(e.get("scopes") or "").split()),
        reason=str(e.get("reason") or "") or None,
        connected_at=tablestore.stored_time(e["connectedAt"]) if e.get("connectedAt") else None,
        last_refresh_at=tablestore.stored_time(e["lastRefreshAt"])
        if e.get("lastRefreshAt")
        else None,
        connected_by=str(e.get("connectedBy") or "") or None,
        secret_name=str(e.get("secretName") or ""),
    )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- service


def mark_mappings_not_synced(resources: Callable[[], TableClient], connection: Connection) -> None:
    """Disconnect hook: keep the building's mappings but show them `not_synced` (`disconnected`).

    The registry (shared/directory/registry.py) keeps mapping and sync fields on the resource
    entity; the sync feature sets `syncStatus` back when the building is connected and synced again.
    `resources` gives the resources table (the wiring binds it).
    """
    table = resources()

    def build(current: tablestore.Entity | None) -> tablestore.Entity | None:
        if current is None or not is_mapped(current):
            return None
        return {**current, "syncStatus": "not_synced", "syncReason": "disconnected"}

    mapped = tablestore.query_all(table, "PartitionKey eq @b", {"b": connection.building_id})
    for entity in mapped:
        if is_mapped(entity):
            tablestore.replace_optimistic(table, connection.building_id, entity["RowKey"], build)


@dataclass(frozen=True)
class ConnectDeps:
    settings: Settings
    connections: ConnectionRepository
    flows: FlowRepository
    secrets: SecretStore
    flow_keys: VersionedKeys  # `oauth-flow-key`: PKCE verifiers and nonces are HMACs under it
    identity: Identity
    tokens: TokenProvider
    read_me: Callable[[Connection, TokenResult], dict[str, Any]]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Run by `disconnect` before the secret goes, so Graph can still be told (the wiring passes
    # the subscriptions' hook and `mark_mappings_not_synced`).
    on_disconnect: tuple[Callable[[Connection], None], ...] = ()
    # verified domain -> tenant id, None if unknown (`discover_tenant_id` in `default_deps`)
    resolve_tenant: Callable[[str], str | None] = _no_tenant_discovery
    audit: Callable[[AuditEntry], None] = lambda entry: None


def start_connect(
    deps: ConnectDeps, building_id: str, caller: Caller, body: Mapping[str, Any]
) -> str:
    """Validate the request, record a flow, return the URL the admin's browser goes to."""
    check_building(building_id)
    errors: list[FieldError] = []
    mode = body.get("mode")
    if mode not in MODES:
        errors.append(FieldError("mode", "must be 'delegated' or 'application'"))
    tenant = body.get("tenant")
    if mode == "application" and (not isinstance(tenant, str) or not _TENANT.match(tenant.strip())):
        errors.append(FieldError("tenant", "must be the tenant id or a verified domain"))
    login_hint = body.get("loginHint")
    if login_hint is not None and (not isinstance(login_hint, str) or len(login_hint) > 256):
        errors.append(FieldError("loginHint", "must be a user name"))
    account = body.get("expectedAccount")
    if account is not None and (not isinstance(account, str) or not _ACCOUNT.match(account)):
        errors.append(
            FieldError("expectedAccount", "must be a user principal name or an object id")
        )
    account = account or (login_hint.strip() if isinstance(login_hint, str) else None)
    if caller.buildings is None and not account:
        # A service acts for someone: it must say who, or any consented colleague could finish.
        errors.append(
            FieldError(
                "expectedAccount",
                "is required when a service starts a connect: the user principal name or "
                "object id of the account that is to sign in (loginHint is used if given)",
            )
        )
    try:
        return_url = validate_return_url(body.get("returnUrl"), deps.settings.return_url_origins)
    except ValidationFailed as failed:
        errors.extend(failed.errors)
    if errors:
        raise ValidationFailed(errors)
    tenant_id = _tenant_id(deps, str(tenant).strip()) if mode == "application" else None
    flow_key = deps.flow_keys.current()
    flow = Flow(
        flow_id=pysecrets.token_urlsafe(16),  # 128 bits: unguessable, the whole CSRF defence
        building_id=building_id,
        caller=caller.actor,
        mode=str(mode),
        return_url=return_url,
        expires_at=deps.now() + FLOW_TTL,
        key_version=flow_key.version,
        expected=Expected(
            oid=None if caller.buildings is None else caller.subject,
            tid=None if caller.buildings is None else caller.tenant_id,
            account=account or None,
        ),
        tenant=tenant_id,
    )
    deps.flows.add(flow)
    logger.info("connect flow started for building %s (%s) by %s", building_id, mode, caller.actor)
    # Both modes bind state + PKCE + nonce to the flow; only the sign-in request differs.
    challenge = pkce_challenge(pkce_verifier(flow_key.key, flow.flow_id))
    nonce = oidc_nonce(flow_key.key, flow.flow_id)
    if flow.mode == "application":
        return admin_authorize_url(
            deps.settings, tenant_id=flow.tenant or "", state=flow.flow_id, challenge=challenge,
            nonce=nonce, login_hint=login_hint,
        )  # fmt: skip
    return authorize_url(
        deps.settings, state=flow.flow_id, challenge=challenge, nonce=nonce, login_hint=login_hint
    )


def _tenant_id(deps: ConnectDeps, tenant: str) -> str:
    """The tenant id an application connect is for: as given, or the one owning the domain."""
    if _GUID.match(tenant):
        return tenant.lower()
    found = deps.resolve_tenant(tenant.lower())
    if found is None:
        raise ValidationFailed([FieldError("tenant", "no Microsoft Entra tenant has this domain")])
    return found


def _take_flow(deps: ConnectDeps, state: str | None, mode: str) -> Flow:
    invalid = ValidationFailed(
        [FieldError("state", "is unknown, already used or expired")],
        detail="This sign-in link is no longer valid; start connecting again",
    )
    if not state or len(state) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", state):
        raise invalid
    flow = deps.flows.take(state)
    if flow is None:
        logger.warning("connect callback with an unknown or used state")
        raise invalid
    if deps.now() > flow.expires_at:
        logger.warning("connect callback for building %s after the flow expired", flow.building_id)
        raise invalid
    if flow.mode != mode:
        logger.warning("connect callback for building %s on the wrong endpoint", flow.building_id)
        raise invalid
    return flow


def complete_delegated(deps: ConnectDeps, params: Mapping[str, str]) -> str:
    """`GET /oauth/callback`: finish a delegated flow; the URL to send the browser to."""
    flow = _take_flow(deps, params.get("state"), "delegated")
    try:
        connection, signed_in = _finish_delegated(deps, flow, params)
    except ConnectFailed as failed:
        _record_failure(deps, flow, failed)
        return with_status(flow.return_url, "error", failed.reason)
    _audit_connect(deps, flow, signed_in, connection.connection_id)
    logger.info(
        "building %s connected (delegated, tenant %s, connection %s)",
        flow.building_id, connection.tenant_id, connection.connection_id,
    )  # fmt: skip
    return with_status(flow.return_url, "connected")


def _finish_delegated(
    deps: ConnectDeps, flow: Flow, params: Mapping[str, str]
) -> tuple[Connection, str]:
    if params.get("error"):
        raise ConnectFailed(
            reason_for(params.get("error"), codes_in(params.get("error_description")))
        )
    code = params.get("code")
    if not code:
        raise ConnectFailed("missing_code")
    tokens, nonce = _redeem(
        deps,
        flow,
        code,
        scopes=list(GRAPH_DELEGATED_SCOPES),
        redirect_uri=callback_uri(deps.settings),
    )
    check_id_claims(
        tokens.id_claims, client_id=deps.settings.client_id,
        authority_host=deps.settings.authority_host, nonce=nonce,
    )  # fmt: skip
    check_account(flow, tokens.id_claims)
    if missing_scopes(tokens.scopes):
        logger.warning(
            "building %s: granted scopes lack %s",
            flow.building_id,
            sorted(missing_scopes(tokens.scopes)),
        )
        raise ConnectFailed("insufficient_scope")
    tenant_id = str(tokens.id_claims["tid"])
    now = deps.now()
    connection = Connection(
        building_id=flow.building_id,
        connection_id=str(uuid.uuid4()),
        mode="delegated",
        status="connected",
        tenant_id=tenant_id,
        scopes=tokens.scopes,
        connected_at=now,
        last_refresh_at=now,
        connected_by=flow.caller,
        secret_name=connection_secret_name(flow.building_id),
    )
    try:
        me = deps.read_me(connection, tokens)
    except DependencyError as err:
        logger.error("connect of %s: reading /me failed: %s", flow.building_id, err.detail)
        raise ConnectFailed("account_unreadable") from err
    if str(me.get("id") or "").lower() != str(tokens.id_claims["oid"]).lower():
        raise ConnectFailed("invalid_id_token")
    connection = replace(
        connection,
        account=Account(
            id=str(me["id"]),
            display_name=me.get("displayName"),
            mail=me.get("mail"),
            user_principal_name=me.get("userPrincipalName"),
        ),
    )
    if not tokens.refresh_token:
        raise ConnectFailed("no_refresh_token")
    try:
        previous = deps.connections.get(flow.building_id)
        deps.secrets.set(connection.secret_name, tokens.refresh_token)
        deps.connections.save(connection)
    except DependencyError as err:
        logger.error("connect of %s: %s", flow.building_id, err.log_detail)
        raise ConnectFailed("service_unavailable", record=False) from err
    if previous is not None:
        deps.tokens.invalidate(previous)
    deps.tokens.prime(connection, tokens)
    return connection, signed_in_account(tokens.id_claims)


def _redeem(
    deps: ConnectDeps, flow: Flow, code: str, *, scopes: list[str], redirect_uri: str
) -> tuple[TokenResult, str]:
    """Redeem the flow's code with its PKCE verifier (a code of another flow fails); the tokens
    and the flow's nonce (MSAL compares it with the id token's, when there is one)."""
    try:
        key = deps.flow_keys.version(flow.key_version)
        nonce = oidc_nonce(key.key, flow.flow_id)
        tokens = deps.identity.redeem_code(
            code,
            scopes=scopes,
            redirect_uri=redirect_uri,
            verifier=pkce_verifier(key.key, flow.flow_id),
            nonce=nonce,
        )
    except IdentityError as err:
        raise ConnectFailed(
            "nonce_mismatch" if err.error == "nonce_mismatch" else reason_for(err.error, err.codes)
        ) from err
    except DependencyError as err:
        logger.error("connect of %s: %s", flow.building_id, err.log_detail)
        raise ConnectFailed("service_unavailable", record=False) from err
    return tokens, nonce


def complete_admin_consent(deps: ConnectDeps, params: Mapping[str, str]) -> str:
    """`GET /oauth/adminconsent`: finish an application flow (`prompt=admin_consent` sign-in).

    The tenant is trusted only from this flow's id token (see the module docstring), never from
    a `tenant` query parameter.
    """
    flow = _take_flow(deps, params.get("state"), "application")
    try:
        connection, signed_in = _finish_application(deps, flow, params)
    except ConnectFailed as failed:
        _record_failure(deps, flow, failed)
        return with_status(flow.return_url, "error", failed.reason)
    _audit_connect(deps, flow, signed_in, connection.connection_id)
    logger.info(
        "building %s connected (application, tenant %s)", flow.building_id, connection.tenant_id
    )
    return with_status(flow.return_url, "connected")


def _finish_application(
    deps: ConnectDeps, flow: Flow, params: Mapping[str, str]
) -> tuple[Connection, str]:
    if params.get("error"):
        raise ConnectFailed(
            reason_for(params.get("error"), codes_in(params.get("error_description")))
        )
    code = params.get("code")
    if not code:
        if "admin_consent" in params or "tenant" in params:
            # The v2 admin consent endpoint's answer: it proves nothing (module docstring), so
            # it is refused even from a flow started before this check existed. Not recorded:
            # Microsoft never sent it, and a forged request must change nothing but its flow.
            logger.warning(
                "building %s: admin consent callback without a code refused", flow.building_id
            )
            raise ConnectFailed("consent_unverifiable", record=False)
        raise ConnectFailed("missing_code")
    tenant = (flow.tenant or "").lower()
    if not _GUID.match(tenant):  # flows always hold the id (a domain is resolved at start)
        raise ConnectFailed("consent_unverifiable")
    tokens, nonce = _redeem(
        deps,
        flow,
        code,
        scopes=[GRAPH_DEFAULT_SCOPE],
        redirect_uri=admin_consent_uri(deps.settings),
    )
    try:
        check_admin_consent_claims(
            tokens.id_claims, client_id=deps.settings.client_id,
            authority_host=deps.settings.authority_host, tenant_id=tenant, nonce=nonce,
        )  # fmt: skip
    except ConnectFailed as failed:
        logger.warning(
            "building %s: consent id token refused (%s): tenant %s, asked for %s",
            flow.building_id, failed.reason, tokens.id_claims.get("tid"), tenant,
        )  # fmt: skip
        raise
    check_account(flow, tokens.id_claims)
    # Ids only (no names, no tokens): who consented, for the audit trail in the logs.
    logger.info(
        "building %s: admin %s of tenant %s consented",
        flow.building_id, tokens.id_claims.get("oid"), tenant,
    )  # fmt: skip
    signed_in = signed_in_account(tokens.id_claims)
    # The code's tokens are the admin's own delegated tokens: the application connection never
    # uses them, and whatever refresh token came back is dropped here, never stored.
    del tokens
    try:
        token = deps.identity.app_token(tenant)  # the app itself can now act in the tenant
    except IdentityError as err:
        raise ConnectFailed(reason_for(err.error, err.codes)) from err
    except DependencyError as err:
        logger.error("admin consent of %s: %s", flow.building_id, err.log_detail)
        raise ConnectFailed("service_unavailable", record=False) from err
    now = deps.now()
    connection = Connection(
        building_id=flow.building_id,
        connection_id=str(uuid.uuid4()),
        mode="application",
        status="connected",
        tenant_id=tenant,
        scopes=token.scopes,
        connected_at=now,
        last_refresh_at=now,
        connected_by=flow.caller,
    )
    try:
        previous = deps.connections.get(flow.building_id)
        deps.connections.save(connection)
        if previous is not None and previous.mode == "delegated":
            deps.secrets.delete(previous.secret_name)  # no refresh token outlives its connection
    except DependencyError as err:
        logger.error("admin consent of %s: %s", flow.building_id, err.log_detail)
        raise ConnectFailed("service_unavailable", record=False) from err
    if previous is not None:
        deps.tokens.invalidate(previous)
    deps.tokens.prime(connection, token)
    return connection, signed_in


def _audit_connect(
    deps: ConnectDeps, flow: Flow, signed_in: str, connection_id: str, refused: str | None = None
) -> None:
    """A `connect` audit record: who started the flow (`actor`), who signed in (`mailbox`)."""
    deps.audit(
        AuditEntry(
            time=deps.now(),
            actor=flow.caller,
            building=flow.building_id,
            connection=connection_id,
            operation=f"connect.{flow.mode}",
            mailbox=signed_in,
            calendar=None,
            result=f"refused {refused}; expected {flow.expected.describe()}" if refused else "ok",
            status=403 if refused else 200,
            request_id=None,
        )
    )


def _record_failure(deps: ConnectDeps, flow: Flow, failed: ConnectFailed) -> None:
    """Show a failed attempt in GET connection, unless the building already has a live connection."""
    logger.warning("connect of building %s failed: %s", flow.building_id, failed.reason)
    if isinstance(failed, AccountMismatch):
        _audit_connect(deps, flow, failed.signed_in, "", refused=failed.reason)
    if not failed.record:
        return
    try:
        current = deps.connections.get(flow.building_id)
        if current is not None and current.status in ("connected", "reauth_required"):
            return  # a failed reconnect must not break (or hide) what exists
        deps.connections.save(
            Connection(
                building_id=flow.building_id,
                connection_id=str(uuid.uuid4()),
                mode=flow.mode,
                status="error",
                tenant_id=flow.tenant or "",
                reason=failed.reason,
                connected_by=flow.caller,
            )
        )
    except BookingBridgeError as err:
        logger.error(
            "could not record the failed connect of %s: %s", flow.building_id, err.log_detail
        )


def connection_status(deps: ConnectDeps, building_id: str) -> dict[str, Any]:
    check_building(building_id)
    connection = deps.connections.get(building_id)
    return connection.to_api() if connection else dict(DISCONNECTED)


def disconnect(deps: ConnectDeps, building_id: str) -> None:
    """Subscriptions deleted (best effort), secret deleted, mappings kept; idempotent."""
    check_building(building_id)
    connection = deps.connections.get(building_id)
    if connection is None:
        return
    for hook in deps.on_disconnect:
        try:
            hook(connection)
        except Exception:  # best effort: a Graph outage must not keep a building connected
            logger.exception("disconnect hook %s failed for %s", hook.__name__, building_id)
    if connection.secret_name:
        deps.secrets.delete(connection.secret_name)
    deps.connections.delete(building_id)
    deps.tokens.invalidate(connection)
    logger.info("building %s disconnected (connection %s)", building_id, connection.connection_id)


def keep_alive(deps: ConnectDeps, *, older_than: timedelta = KEEPALIVE_AFTER) -> dict[str, int]:
    """Refresh delegated grants idle for `older_than`, so they never reach 90 days of inactivity."""
    counts = {"refreshed": 0, "failed": 0, "skipped": 0}
    cutoff = deps.now() - older_than
    for connection in deps.connections.all():
        if connection.mode != "delegated" or connection.status != "connected":
            counts["skipped"] += 1
            continue
        if connection.last_refresh_at and connection.last_refresh_at > cutoff:
            counts["skipped"] += 1
            continue
        try:
            deps.tokens.refresh_now(connection)
            counts["refreshed"] += 1
        except BookingBridgeError as err:  # reauth already recorded by the provider
            logger.warning("keep-alive of %s failed: %s", connection.building_id, err.reason)
            counts["failed"] += 1
    try:
        counts["expiredFlows"] = deps.flows.delete_expired(deps.now() - FLOW_TTL)
    except StorageError as err:
        logger.warning("sweeping expired flows failed: %s", err.log_detail)
    return counts


# ---------------------------------------------------------------- deprecated aliases


def default_deps() -> ConnectDeps:
    """Deprecated alias of `shared.wiring.connect_deps` (removed at the end of issue 12)."""
    from shared import wiring

    return wiring.connect_deps()


def reset_default_deps() -> None:
    """Deprecated alias of `shared.wiring.reset` (removed at the end of issue 12)."""
    from shared import wiring

    wiring.reset()
