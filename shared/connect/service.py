"""Connecting a building to Microsoft 365: the connect flows, connection status, disconnect,
keep-alive.

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

Services take their collaborators in `ConnectDeps`; `shared.wiring.connect_deps()` builds the
process's set. The pieces: shared/connect/model.py (flows, failures), flows.py (pure checks and
URLs), repository.py (tables), tokens.py (MSAL, token provider); the connection record itself is
shared/core/connection.py.
"""

from __future__ import annotations

import logging
import re
import secrets as pysecrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.connect.flows import (
    admin_authorize_url,
    admin_consent_uri,
    authorize_url,
    callback_uri,
    check_account,
    check_admin_consent_claims,
    check_id_claims,
    missing_scopes,
    signed_in_account,
    validate_return_url,
    with_status,
)
from shared.connect.model import FLOW_TTL, MODES, AccountMismatch, ConnectFailed, Expected, Flow
from shared.connect.repository import CONNECTIONS_TABLE, ConnectionRepository, FlowRepository
from shared.connect.tokens import Identity, TokenProvider, TokenResult, codes_in, reason_for
from shared.core.connection import ACCESS_LEVELS, FREE_BUSY, FULL_ACCESS, Account, Connection
from shared.core.errors import (
    BookingBridgeError,
    DependencyError,
    FieldError,
    IdentityError,
    StorageError,
    ValidationFailed,
)
from shared.core.settings import Settings
from shared.core.times import utc_z
from shared.core.validate import ACCOUNT, GUID, TENANT, check_building
from shared.directory.registry import is_mapped
from shared.graph.audit import AuditEntry
from shared.graph.permissions import (
    FREE_BUSY_DELEGATED_SCOPES,
    GRAPH_DEFAULT_SCOPE,
    GRAPH_DELEGATED_SCOPES,
    SCHEDULE_READERS,
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
from shared.webhooks import events as webhook_events

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from shared.api.auth import Caller

logger = logging.getLogger(__name__)

KEEPALIVE_AFTER = timedelta(days=7)  # well inside Entra's 90-day refresh-token inactivity limit


def mark_mappings_not_synced(
    resources: Callable[[], TableClient],
    connection: Connection,
    emit: Callable[[str, list[Any]], object] = lambda building, events: 0,
) -> None:
    """Disconnect hook: keep the building's mappings but show them `not_synced` (`disconnected`).

    The registry (shared/directory/registry.py) keeps mapping and sync fields on the resource
    entity; the sync feature sets `syncStatus` back when the building is connected and synced again.
    `resources` gives the resources table (the wiring binds it); `emit` hands the outgoing
    webhooks' mapping.status_changed over before each write (issue 16).
    """
    table = resources()
    at = tablestore.iso_utc(datetime.now(UTC)) or ""

    def build(current: tablestore.Entity | None) -> tablestore.Entity | None:
        if current is None or not is_mapped(current):
            return None
        if current.get("syncStatus") != "not_synced":
            emit(connection.building_id, [webhook_events.mapping_status(
                building=connection.building_id, resource=str(current["RowKey"]),
                status="not_synced", previous=current.get("syncStatus"), reason="disconnected",
                table=tablestore.RESOURCES, at=at,
            )])  # fmt: skip
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
    # verified domain -> tenant id, None if unknown (the wiring passes `flows.discover_tenant_id`)
    resolve_tenant: Callable[[str], str | None]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Run by `disconnect` before the secret goes, so Graph can still be told (the wiring passes
    # the subscriptions' hook and `mark_mappings_not_synced`).
    on_disconnect: tuple[Callable[[Connection], None], ...] = ()
    audit: Callable[[AuditEntry], None] = lambda entry: None


def _announce_restored(deps: ConnectDeps, previous: Connection | None, new: Connection) -> None:
    """connection.restored when a reconnect replaces a connection that needed re-authorisation,
    handed over before the new row is saved (its check waits for that row)."""
    if previous is None or previous.status != "reauth_required":
        return
    deps.connections.emit(new.building_id, [webhook_events.connection_status(
        building=new.building_id, connection_id=new.connection_id, status="connected",
        reason=None, table=CONNECTIONS_TABLE,
    )])  # fmt: skip


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
    if mode == "application" and (not isinstance(tenant, str) or not TENANT.match(tenant.strip())):
        errors.append(FieldError("tenant", "must be the tenant id or a verified domain"))
    login_hint = body.get("loginHint")
    if login_hint is not None and (not isinstance(login_hint, str) or len(login_hint) > 256):
        errors.append(FieldError("loginHint", "must be a user name"))
    account = body.get("expectedAccount")
    if account is not None and (not isinstance(account, str) or not ACCOUNT.fullmatch(account)):
        errors.append(
            FieldError("expectedAccount", "must be a user principal name or an object id")
        )
    account = account or (login_hint.strip() if isinstance(login_hint, str) else None)
    access = body.get("access", FULL_ACCESS)
    if access not in ACCESS_LEVELS:
        errors.append(FieldError("access", "must be 'full' or 'freeBusy'"))
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
        access=str(access),
    )
    deps.flows.add(flow)
    logger.info("connect flow started for building %s (%s, %s access) by %s", building_id, mode,
                flow.access, caller.actor)  # fmt: skip
    # Both modes bind state + PKCE + nonce to the flow; only the sign-in request differs.
    challenge = pkce_challenge(pkce_verifier(flow_key.key, flow.flow_id))
    nonce = oidc_nonce(flow_key.key, flow.flow_id)
    if flow.mode == "application":
        return admin_authorize_url(
            deps.settings, tenant_id=flow.tenant or "", state=flow.flow_id, challenge=challenge,
            nonce=nonce, login_hint=login_hint,
        )  # fmt: skip
    return authorize_url(
        deps.settings, state=flow.flow_id, challenge=challenge, nonce=nonce, login_hint=login_hint,
        scopes=delegated_scopes(flow.access),
    )  # fmt: skip


def delegated_scopes(access: str) -> tuple[str, ...]:
    """The Graph scopes a delegated connect asks for: all of ours, or free/busy's few (issue 19)."""
    return FREE_BUSY_DELEGATED_SCOPES if access == FREE_BUSY else GRAPH_DELEGATED_SCOPES


def _tenant_id(deps: ConnectDeps, tenant: str) -> str:
    """The tenant id an application connect is for: as given, or the one owning the domain."""
    if GUID.match(tenant):
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
    return _complete(deps, params, "delegated", _finish_delegated)


def complete_admin_consent(deps: ConnectDeps, params: Mapping[str, str]) -> str:
    """`GET /oauth/adminconsent`: finish an application flow (`prompt=admin_consent` sign-in).

    The tenant is trusted only from this flow's id token (see the module docstring), never from
    a `tenant` query parameter.
    """
    return _complete(deps, params, "application", _finish_application)


def _complete(
    deps: ConnectDeps,
    params: Mapping[str, str],
    mode: str,
    finish: Callable[[ConnectDeps, Flow, Mapping[str, str]], tuple[Connection, str]],
) -> str:
    """Take the callback's flow, finish it, and say how it went on the flow's return URL."""
    flow = _take_flow(deps, params.get("state"), mode)
    try:
        connection, signed_in = finish(deps, flow, params)
    except ConnectFailed as failed:
        _record_failure(deps, flow, failed)
        return with_status(flow.return_url, "error", failed.reason)
    _audit_connect(deps, flow, signed_in, connection.connection_id)
    logger.info(
        "building %s connected (%s, tenant %s, connection %s)",
        flow.building_id, mode, connection.tenant_id, connection.connection_id,
    )  # fmt: skip
    return with_status(flow.return_url, "connected")


def _refused_by_entra(params: Mapping[str, str]) -> None:
    """Entra's error redirect (`error`, `error_description`) ends the attempt with its reason."""
    if params.get("error"):
        raise ConnectFailed(
            reason_for(params.get("error"), codes_in(params.get("error_description")))
        )


def _finish_delegated(
    deps: ConnectDeps, flow: Flow, params: Mapping[str, str]
) -> tuple[Connection, str]:
    _refused_by_entra(params)
    code = params.get("code")
    if not code:
        raise ConnectFailed("missing_code")
    tokens, nonce = _redeem(
        deps,
        flow,
        code,
        scopes=list(delegated_scopes(flow.access)),
        redirect_uri=callback_uri(deps.settings),
    )
    check_id_claims(
        tokens.id_claims, client_id=deps.settings.client_id,
        authority_host=deps.settings.authority_host, nonce=nonce,
    )  # fmt: skip
    check_account(flow, tokens.id_claims)
    if missing_scopes(tokens.scopes, flow.access):
        logger.warning(
            "building %s: granted scopes lack %s",
            flow.building_id,
            sorted(missing_scopes(tokens.scopes, flow.access)),
        )
        raise ConnectFailed("insufficient_scope")
    connection = _new_connection(
        flow, "connected", str(tokens.id_claims["tid"]), now=deps.now(), scopes=tokens.scopes,
        secret_name=connection_secret_name(flow.building_id),
    )  # fmt: skip
    try:
        me = deps.read_me(connection, tokens)
    except DependencyError as err:
        logger.error("connect of %s: reading /me failed: %s", flow.building_id, err.detail)
        raise ConnectFailed("account_unreadable") from err
    if str(me.get("id") or "").lower() != str(tokens.id_claims["oid"]).lower():
        raise ConnectFailed("invalid_id_token")
    connection = replace(connection, account=Account.from_json(me))
    if not tokens.refresh_token:
        raise ConnectFailed("no_refresh_token")
    try:
        previous = deps.connections.get(flow.building_id)
        deps.secrets.set(connection.secret_name, tokens.refresh_token)
        _announce_restored(deps, previous, connection)
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


def _finish_application(
    deps: ConnectDeps, flow: Flow, params: Mapping[str, str]
) -> tuple[Connection, str]:
    _refused_by_entra(params)
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
    if not GUID.match(tenant):  # flows always hold the id (a domain is resolved at start)
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
    if flow.access == FREE_BUSY and not token.scopes & SCHEDULE_READERS:
        # getSchedule needs a calendar permission; Place.Read.All alone reads no free/busy.
        logger.warning("building %s: free/busy consent without a calendar permission",
                       flow.building_id)  # fmt: skip
        raise ConnectFailed("insufficient_scope")
    connection = _new_connection(flow, "connected", tenant, now=deps.now(), scopes=token.scopes)
    try:
        previous = deps.connections.get(flow.building_id)
        _announce_restored(deps, previous, connection)
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


def _new_connection(
    flow: Flow,
    status: str,
    tenant_id: str,
    *,
    now: datetime | None = None,
    scopes: frozenset[str] = frozenset(),
    secret_name: str = "",
    reason: str | None = None,
) -> Connection:
    """The connection a flow ends in, in the flow's mode for its caller. A new id every time:
    audit records and in-process caches (tokens, per-mailbox limits) key on it."""
    return Connection(
        building_id=flow.building_id,
        connection_id=str(uuid.uuid4()),
        mode=flow.mode,
        status=status,
        tenant_id=tenant_id,
        scopes=scopes,
        reason=reason,
        connected_at=now,
        last_refresh_at=now,
        connected_by=flow.caller,
        secret_name=secret_name,
        access=flow.access,
    )


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
            _new_connection(flow, "error", flow.tenant or "", reason=failed.reason)
        )
    except BookingBridgeError as err:
        logger.error(
            "could not record the failed connect of %s: %s", flow.building_id, err.log_detail
        )


def connection_status(deps: ConnectDeps, building_id: str) -> dict[str, Any]:
    """The `GET /buildings/{b}/connection` shape (API.md); `disconnected` without a connection."""
    check_building(building_id)
    c = deps.connections.get(building_id)
    if c is None:
        return {
            "status": "disconnected", "mode": None, "account": None, "tenantId": None,
            "scopes": [], "access": None, "connectedAt": None, "lastRefreshAt": None,
            "reason": None,
        }  # fmt: skip
    return {
        "status": c.status,
        "mode": c.mode,
        "account": c.account.to_json() if c.account else None,
        "tenantId": c.tenant_id or None,
        "scopes": sorted(c.scopes),
        "access": c.access,
        "connectedAt": utc_z(c.connected_at) if c.connected_at else None,
        "lastRefreshAt": utc_z(c.last_refresh_at) if c.last_refresh_at else None,
        "reason": c.reason,
    }


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
