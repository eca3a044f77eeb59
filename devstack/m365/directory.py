"""The emulated Entra ID directory: tenants, users, room mailboxes, app registrations and grants.

Everything the identity, Graph and Key Vault emulators need to decide "who is this and what may it
do" lives here, in memory. It is filled by `Directory.seed(scenario)` (see README.md for the
scenario format); seeding can be repeated so tests add fresh tenants to one shared emulator.

Permission model (as Entra and Exchange do it):
- delegated grants (oauth2PermissionGrant): per user, or tenant-wide ("AllPrincipals", admin
  consent), per client app and resource;
- application permissions (appRoleAssignment to the resource's service principal): tenant-wide,
  only by admin consent;
- user app-role assignments (e.g. `Building.Admin` on the BookingBridge API);
- Exchange RBAC for Applications: an app gets `Application Calendars.Read|ReadWrite` on a set of
  mailboxes; additive to the tenant-wide application permissions.
- revocation: "revoke sessions" sets a per-user (optionally per-client) instant; refresh tokens and
  access tokens issued before it stop working.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devstack.m365.clock import Clock

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

# Graph delegated scopes the emulator knows; True = only an admin may consent (Graph's
# permission reference, GRAPH.md §2.1). Unknown scopes are refused like Entra does (AADSTS70011).
GRAPH_DELEGATED: dict[str, bool] = {
    "User.Read": False,
    "User.ReadBasic.All": False,
    "User.Read.All": True,
    "Calendars.ReadBasic": False,
    "Calendars.Read": False,
    "Calendars.Read.Shared": False,
    "Calendars.ReadWrite": False,
    "Calendars.ReadWrite.Shared": False,
    "MailboxSettings.Read": False,
    "MailboxSettings.ReadWrite": False,
    "Place.Read.All": True,
    "Directory.Read.All": True,
}
GRAPH_APPLICATION = frozenset(
    {
        "Calendars.Read",
        "Calendars.ReadBasic.All",
        "Calendars.ReadWrite",
        "Place.Read.All",
        "User.Read.All",
        "MailboxSettings.Read",
        "Directory.Read.All",
    }
)
KEY_VAULT_DELEGATED = frozenset({"user_impersonation"})
ADMIN_ROLES = frozenset(
    {
        "Global Administrator",
        "Privileged Role Administrator",
        "Cloud Application Administrator",
        "Application Administrator",
    }
)
RBAC_ROLES = {
    "Application Calendars.Read": "Calendars.Read",
    "Application Calendars.ReadWrite": "Calendars.ReadWrite",
}
ALL_PRINCIPALS = "AllPrincipals"
# Resource mailboxes: rooms, and the desks and workspaces Microsoft Places books through one.
RESOURCE_KINDS = frozenset({"room", "desk", "workspace"})
# Microsoft Places types a scenario's `places` may hold (rooms are users of type room).
PLACE_TYPES = ("building", "floor", "section", "desk", "workspace")
PLACE_MODES = ("reservable", "dropIn", "assigned", "unavailable")


class SeedError(ValueError):
    """The scenario is inconsistent (unknown reference, duplicate id, ...)."""


@dataclass
class User:
    id: str
    tenant_id: str
    user_principal_name: str
    mail: str
    display_name: str
    mail_nickname: str
    kind: str = "person"  # "person", or a resource mailbox (cannot sign in): RESOURCE_KINDS
    given_name: str | None = None
    surname: str | None = None
    job_title: str | None = None
    directory_roles: list[str] = field(default_factory=list)
    room: dict[str, Any] = field(default_factory=dict)  # capacity, building, floorNumber, ...
    # Exchange folder permission of "Default" (everyone in the organisation) on the default
    # calendar: AvailabilityOnly unless seeded otherwise, as Exchange Online creates mailboxes
    # (`calendarPermission` in a scenario; getSchedule shows subjects only above it).
    calendar_permission: str = "AvailabilityOnly"
    extra: dict[str, Any] = field(default_factory=dict)  # other Graph user properties, verbatim
    account_enabled: bool = True
    # Directory extension attributes (Entra: schema extensions on the user). An app that lists one in
    # its `optionalClaims` gets it as a claim in access tokens for its API, as Entra emits
    # directory extensions configured as optional claims.
    extension_attributes: dict[str, Any] = field(default_factory=dict)
    _password_salt: bytes = b""
    _password_hash: bytes = b""

    @property
    def is_room(self) -> bool:
        """A resource mailbox (room, desk or workspace): booked by invitation, never signs in."""
        return self.kind in RESOURCE_KINDS

    @property
    def is_admin(self) -> bool:
        return bool(ADMIN_ROLES.intersection(self.directory_roles))

    def set_password(self, password: str) -> None:
        self._password_salt = secrets.token_bytes(16)
        self._password_hash = _hash_secret(password, self._password_salt)

    def check_password(self, password: str) -> bool:
        if not self._password_hash or not self.account_enabled:
            return False
        return hmac.compare_digest(self._password_hash, _hash_secret(password, self._password_salt))


@dataclass
class RoomList:
    id: str
    tenant_id: str
    display_name: str
    email_address: str
    room_ids: list[str]


@dataclass(frozen=True)
class CalendarSpec:
    """A secondary calendar Graph creates at seed time."""

    tenant_id: str
    owner_id: str
    name: str
    color: str | None = None


@dataclass(frozen=True)
class CalendarShare:
    """`owner` shares a calendar (None = the default calendar, else a calendar name) with a user."""

    tenant_id: str
    owner_id: str
    calendar_name: str | None
    grantee_id: str
    role: str  # Graph calendarRoleType: read, write, delegateWithoutPrivateEventAccess, ...


@dataclass(frozen=True)
class RbacAssignment:
    tenant_id: str
    client_id: str
    role: str  # "Application Calendars.Read" | "Application Calendars.ReadWrite"
    mailbox_ids: frozenset[str]


@dataclass(frozen=True)
class AppRole:
    value: str
    allowed_member_types: tuple[str, ...]
    id: str
    display_name: str


@dataclass
class App:
    """An app registration (global, like Entra's: one client id, usable in every tenant if multi)."""

    client_id: str
    key: str
    display_name: str
    home_tenant_id: str | None
    sign_in_audience: str  # AzureADMyOrg | AzureADMultipleOrgs
    redirect_uris: list[str]
    identifier_uris: list[str]
    app_roles: list[AppRole]
    exposed_scopes: list[str]
    # resource (GRAPH_RESOURCE, KEY_VAULT_RESOURCE or an API's client id) -> permissions
    required_delegated: dict[str, set[str]]
    required_application: dict[str, set[str]]
    optional_claims: list[str] = field(default_factory=list)  # user extension attributes to emit
    # The `spa` platform (Entra's `spa.redirectUris`): redirect URIs whose codes are redeemed by
    # the browser, cross-origin, as a public client (PKCE, no secret, 24 h refresh tokens).
    spa_redirect_uris: list[str] = field(default_factory=list)
    # Exposed delegated scopes (`api.oauth2PermissionScopes`) whose `type` is "Admin".
    admin_scopes: set[str] = field(default_factory=set)
    scope_titles: dict[str, str] = field(default_factory=dict)  # value -> consent display name
    _secret_hashes: list[bytes] = field(default_factory=list)

    @property
    def multi_tenant(self) -> bool:
        return self.sign_in_audience != "AzureADMyOrg"

    def add_secret(self) -> str:
        secret = secrets.token_urlsafe(30)
        self._secret_hashes.append(hashlib.sha256(secret.encode()).digest())
        return secret

    def check_secret(self, secret: str) -> bool:
        digest = hashlib.sha256(secret.encode()).digest()
        return any(hmac.compare_digest(digest, known) for known in self._secret_hashes)

    def accepts_redirect(self, uri: str) -> bool:
        """A registered redirect URI of any platform (web or spa)."""
        return uri in self.redirect_uris or uri in self.spa_redirect_uris

    def is_spa_redirect(self, uri: str) -> bool:
        return uri in self.spa_redirect_uris

    def usable_in(self, tenant_id: str) -> bool:
        return self.multi_tenant or self.home_tenant_id == tenant_id

    def role(self, value: str) -> AppRole | None:
        return next((r for r in self.app_roles if r.value == value), None)


@dataclass
class Place:
    """A Microsoft Places building, floor, section, desk or workspace (rooms are room users).

    `data` holds the type's own properties as the scenario gives them (`mode`, `capacity`,
    `sortOrder`, `address`, `tags`, ...); `mailbox` the user id of a bookable desk's or
    workspace's resource mailbox.
    """

    id: str
    key: str
    type: str
    display_name: str
    parent_id: str | None = None
    mailbox: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tenant:
    id: str
    domain: str
    display_name: str
    key: str
    users: dict[str, User] = field(default_factory=dict)
    room_lists: dict[str, RoomList] = field(default_factory=dict)
    calendars: list[CalendarSpec] = field(default_factory=list)
    calendar_shares: list[CalendarShare] = field(default_factory=list)
    rbac: list[RbacAssignment] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)  # buildings, floors, sections, desks, ...

    def people(self) -> list[User]:
        return [u for u in self.users.values() if not u.is_room]

    def rooms(self) -> list[User]:
        """Room mailboxes (Places `microsoft.graph.room`), not desks or workspaces."""
        return [u for u in self.users.values() if u.kind == "room"]


@dataclass(frozen=True)
class Resource:
    """What a scope prefix names: the audience of tokens for it and how its permissions work."""

    audience: str  # token `aud`
    kind: str  # "graph" | "keyvault" | "app"
    app: App | None = None

    @property
    def key(self) -> str:
        """The key grants are stored under (GRAPH_RESOURCE, KEY_VAULT_RESOURCE or client id)."""
        return self.app.client_id if self.app else self.audience


class Directory:
    """All tenants and apps. Lookups are thread-safe enough for one asyncio server + tests."""

    def __init__(self, clock: Clock | None = None) -> None:
        # Revocation instants must be on the emulator clock (tokens' issue times are).
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.apps: dict[str, App] = {}
        self._domains: dict[str, str] = {}
        # (tenant, client, principal id | ALL_PRINCIPALS) -> resource key -> scopes
        self._delegated: dict[tuple[str, str, str], dict[str, set[str]]] = {}
        # (tenant, client) -> resource key -> app roles (application permissions)
        self._application: dict[tuple[str, str], dict[str, set[str]]] = {}
        # (tenant, user) -> resource client id -> app roles
        self._user_roles: dict[tuple[str, str], dict[str, set[str]]] = {}
        # (tenant, user, client | "*") -> instant before which tokens are void
        self._valid_after: dict[tuple[str, str, str], dt.datetime] = {}
        self._seed_listeners: list[Callable[[Tenant], None]] = []
        self._revoke_listeners: list[Callable[[str, str, str | None], None]] = []

    # ----------------------------------------------------------------- lookups
    def tenant(self, id_or_domain: str) -> Tenant | None:
        with self._lock:
            key = id_or_domain.lower()
            if key in self.tenants:
                return self.tenants[key]
            tid = self._domains.get(key)
            return self.tenants.get(tid) if tid else None

    def user(self, tenant_id: str, id_or_upn: str) -> User | None:
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return None
        wanted = id_or_upn.lower()
        if wanted in tenant.users:
            return tenant.users[wanted]
        for user in tenant.users.values():
            if wanted in (user.user_principal_name.lower(), user.mail.lower()):
                return user
        return None

    def find_user_anywhere(self, upn: str) -> User | None:
        """Home-realm discovery for `/organizations` and `/common`: the tenant owning the UPN."""
        domain = upn.rpartition("@")[2].lower()
        tenant = self.tenant(domain) if domain else None
        return self.user(tenant.id, upn) if tenant else None

    def app(self, client_id: str) -> App | None:
        return self.apps.get(client_id.lower())

    def spa_origins(self) -> set[str]:
        """Origins of every app's SPA redirect URIs (what a CORS preflight is answered for)."""
        with self._lock:
            uris = [u for a in self.apps.values() for u in a.spa_redirect_uris]
        return {o for o in (_origin(u) for u in uris) if o}

    def resolve_resource(self, prefix: str, tenant_id: str | None = None) -> Resource | None:
        """The resource a scope prefix names (`https://graph.microsoft.com`, `api://x`, a GUID)."""
        p = prefix.rstrip("/")
        low = p.lower()
        if low in (GRAPH_RESOURCE, GRAPH_APP_ID, "https://graph.microsoft.com/v1.0"):
            return Resource(GRAPH_RESOURCE, "graph")
        if low in (KEY_VAULT_RESOURCE, KEY_VAULT_APP_ID):
            return Resource(KEY_VAULT_RESOURCE, "keyvault")
        with self._lock:
            direct = self.apps.get(low)
            if direct is not None:
                return Resource(direct.client_id, "app", direct)
            matches = [a for a in self.apps.values() if p in a.identifier_uris]
        if not matches:
            return None
        # Identifier URIs are unique within a tenant; tests seed several copies of the demo app,
        # so prefer the copy registered in the requesting tenant.
        own = [a for a in matches if a.home_tenant_id == tenant_id]
        chosen = (own or matches)[-1]
        # v2 access tokens (accessTokenAcceptedVersion 2) carry the API's client id as `aud`.
        return Resource(chosen.client_id, "app", chosen)

    # ------------------------------------------------------------- permissions
    def delegated_scopes(
        self, tenant_id: str, client_id: str, user_id: str, resource: str = GRAPH_RESOURCE
    ) -> set[str]:
        """Scopes granted to `client_id` for `user_id` on `resource` (own + tenant-wide grants)."""
        with self._lock:
            own = self._delegated.get((tenant_id, client_id.lower(), user_id), {})
            everyone = self._delegated.get((tenant_id, client_id.lower(), ALL_PRINCIPALS), {})
            return set(own.get(resource, set())) | set(everyone.get(resource, set()))

    def admin_delegated_scopes(
        self, tenant_id: str, client_id: str, resource: str = GRAPH_RESOURCE
    ) -> set[str]:
        with self._lock:
            grant = self._delegated.get((tenant_id, client_id.lower(), ALL_PRINCIPALS), {})
            return set(grant.get(resource, set()))

    def application_permissions(
        self, tenant_id: str, client_id: str, resource: str = GRAPH_RESOURCE
    ) -> set[str]:
        """Application permissions (app roles) admin-consented tenant-wide for the client."""
        with self._lock:
            return set(self._application.get((tenant_id, client_id.lower()), {}).get(resource, ()))

    def rbac_permissions(self, tenant_id: str, client_id: str, mailbox_user_id: str) -> set[str]:
        """Graph permissions Exchange RBAC for Applications gives the client on one mailbox."""
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return set()
        return {
            RBAC_ROLES[a.role]
            for a in tenant.rbac
            if a.client_id == client_id.lower() and mailbox_user_id in a.mailbox_ids
        }

    def user_app_roles(self, tenant_id: str, user_id: str, resource_client_id: str) -> set[str]:
        with self._lock:
            return set(self._user_roles.get((tenant_id, user_id), {}).get(resource_client_id, ()))

    def grant_delegated(
        self,
        tenant_id: str,
        client_id: str,
        principal: str,
        resource: str,
        scopes: Iterable[str],
    ) -> None:
        """Record consent (principal = a user id, or ALL_PRINCIPALS for admin consent)."""
        with self._lock:
            grant = self._delegated.setdefault((tenant_id, client_id.lower(), principal), {})
            grant.setdefault(resource, set()).update(scopes)

    def grant_application(
        self, tenant_id: str, client_id: str, resource: str, roles: Iterable[str]
    ) -> None:
        with self._lock:
            grant = self._application.setdefault((tenant_id, client_id.lower()), {})
            grant.setdefault(resource, set()).update(roles)

    def assign_user_role(self, tenant_id: str, user_id: str, resource: str, role: str) -> None:
        with self._lock:
            self._user_roles.setdefault((tenant_id, user_id), {}).setdefault(resource, set()).add(
                role
            )

    def admin_consent_required(self, tenant_id: str, client_id: str) -> None:
        """Admin consent of everything the registration requires (what `/.default` consents to)."""
        app = self.app(client_id)
        if app is None:
            raise KeyError(client_id)
        for resource, scopes in app.required_delegated.items():
            wanted = {s for s in scopes if s not in OIDC_SCOPES}
            self.grant_delegated(tenant_id, client_id, ALL_PRINCIPALS, resource, wanted)
        for resource, roles in app.required_application.items():
            self.grant_application(tenant_id, client_id, resource, roles)

    def revoke_grant(
        self,
        tenant_id: str,
        user_id: str,
        client_id: str | None = None,
        *,
        remove_consent: bool = False,
        at: dt.datetime | None = None,
    ) -> dt.datetime:
        """Revoke a user's sessions (for one client, or all): tokens issued before now stop working.

        Like Entra's revokeSignInSessions: refresh tokens fail with AADSTS50173 and, in this
        emulator, access tokens issued earlier are refused too. `remove_consent` also deletes the
        user's own delegated grant (a tenant-wide admin grant stays).
        """
        when = at or self.clock.now()
        with self._lock:
            key = (tenant_id, user_id, client_id.lower() if client_id else "*")
            self._valid_after[key] = when
            if remove_consent and client_id:
                self._delegated.pop((tenant_id, client_id.lower(), user_id), None)
            listeners = list(self._revoke_listeners)
        for listener in listeners:
            listener(tenant_id, user_id, client_id)
        return when

    def tokens_valid_after(
        self, tenant_id: str, user_id: str, client_id: str | None
    ) -> dt.datetime | None:
        """Tokens for (user, client) issued before this instant were revoked; None = never."""
        with self._lock:
            found = [
                self._valid_after.get((tenant_id, user_id, "*")),
                self._valid_after.get((tenant_id, user_id, (client_id or "").lower())),
            ]
        known = [f for f in found if f is not None]
        return max(known) if known else None

    # --------------------------------------------------------------- listeners
    def on_seed(self, listener: Callable[[Tenant], None]) -> None:
        """Call `listener(tenant)` after each tenant is seeded (Graph creates mailboxes then)."""
        self._seed_listeners.append(listener)

    def on_revoke(self, listener: Callable[[str, str, str | None], None]) -> None:
        """Call `listener(tenant_id, user_id, client_id|None)` after each revocation."""
        self._revoke_listeners.append(listener)

    # ------------------------------------------------------------------ seeding
    def seed(
        self,
        scenario: dict[str, Any],
        *,
        fresh: bool = False,
        redirect_uris: dict[str, list[str]] | None = None,
        spa_redirect_uris: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """Add the scenario's apps and tenants; return ids, generated secrets and passwords.

        `fresh` replaces every tenant id, domain and client id by new ones, so the same scenario
        file can be seeded again and again (one fresh tenant per test). `redirect_uris` replaces
        the (web) redirect URIs of apps by key (tests listen on their own ports),
        `spa_redirect_uris` their SPA redirect URIs.
        """
        scenario = copy.deepcopy(scenario)
        with self._lock:
            if fresh:
                _freshen(scenario)
            for field_name, given in (
                ("redirectUris", redirect_uris),
                ("spaRedirectUris", spa_redirect_uris),
            ):
                for key, uris in (given or {}).items():
                    matching = [a for a in scenario.get("apps", []) if a.get("key") == key]
                    if not matching:
                        raise SeedError(f"{field_name} given for unknown app key {key!r}")
                    matching[0][field_name] = list(uris)
            return self._seed(scenario)

    def _seed(self, scenario: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"tenants": {}, "apps": {}}
        tenant_specs = scenario.get("tenants", [])
        # Tenant ids first: apps name their home tenant by key.
        tenant_ids: dict[str, str] = {}
        for spec in tenant_specs:
            tid = str(spec.get("id") or uuid.uuid4()).lower()
            domain = str(spec["domain"]).lower()
            if tid in self.tenants or domain in self._domains:
                raise SeedError(f"tenant {tid} / {domain} already exists (seed with fresh=true)")
            tenant_ids[str(spec.get("key") or domain)] = tid
        app_keys: dict[str, App] = {}
        for spec in scenario.get("apps", []):
            app = self._build_app(spec, tenant_ids)
            app_keys[app.key] = app
        self._fix_app_refs(app_keys)
        # Validate everything before changing state, so a bad scenario leaves nothing behind.
        for app in app_keys.values():
            if app.client_id in self.apps:
                raise SeedError(f"app {app.client_id} already exists (seed with fresh=true)")
        try:
            return self._seed_all(scenario, tenant_specs, tenant_ids, app_keys, result)
        except Exception:
            # A bad reference deep in a tenant: leave nothing half-seeded behind.
            for app in app_keys.values():
                if self.apps.get(app.client_id) is app:
                    del self.apps[app.client_id]
            for tid in tenant_ids.values():
                tenant = self.tenants.pop(tid, None)
                if tenant is not None:
                    self._domains.pop(tenant.domain, None)
            raise

    def _seed_all(
        self,
        scenario: dict[str, Any],
        tenant_specs: list[dict[str, Any]],
        tenant_ids: dict[str, str],
        app_keys: dict[str, App],
        result: dict[str, Any],
    ) -> dict[str, Any]:
        for app in app_keys.values():
            self.apps[app.client_id] = app
            secret = app.add_secret()
            result["apps"][app.key] = {
                "clientId": app.client_id,
                "clientSecret": secret,
                "displayName": app.display_name,
                "identifierUri": app.identifier_uris[0] if app.identifier_uris else None,
                "redirectUris": list(app.redirect_uris),
                "spaRedirectUris": list(app.spa_redirect_uris),
                "scopes": list(app.exposed_scopes),
                "homeTenantId": app.home_tenant_id,
            }
        seeded: list[Tenant] = []
        for spec in tenant_specs:
            key = str(spec.get("key") or spec["domain"])
            tenant, info = self._seed_tenant(spec, tenant_ids[key], key, app_keys)
            seeded.append(tenant)
            result["tenants"][key] = info
        if tenant_specs:
            first = str(tenant_specs[0].get("key") or tenant_specs[0]["domain"])
            result["tenant"] = result["tenants"][first]
        for tenant in seeded:
            for listener in list(self._seed_listeners):
                listener(tenant)
        return result

    def _app_ref(self, ref: str, app_keys: dict[str, App]) -> App:
        app = app_keys.get(ref) or self.app(ref)
        if app is None:
            raise SeedError(f"unknown app {ref!r}")
        return app

    def _build_app(self, spec: dict[str, Any], tenant_ids: dict[str, str]) -> App:
        client_id = str(spec.get("clientId") or uuid.uuid4()).lower()
        home = spec.get("homeTenant")
        home_id = tenant_ids.get(home, home) if home else None
        roles = [
            AppRole(
                value=r["value"],
                allowed_member_types=tuple(r.get("allowedMemberTypes", ["Application"])),
                id=str(r.get("id") or uuid.uuid5(uuid.UUID(client_id), r["value"])),
                display_name=r.get("displayName", r["value"]),
            )
            for r in spec.get("appRoles", [])
        ]
        # Exposed delegated scopes: the short list `scopes`, or Entra's manifest shape
        # `oauth2PermissionScopes` ([{"value", "type": "User"|"Admin", "...DisplayName"}]).
        scopes = [str(s) for s in spec.get("scopes", [])]
        admin_scopes: set[str] = set()
        titles: dict[str, str] = {}
        for entry in spec.get("oauth2PermissionScopes", []):
            value = str(entry["value"])
            if value not in scopes:
                scopes.append(value)
            if entry.get("type", "User") == "Admin":
                admin_scopes.add(value)
            title = entry.get("userConsentDisplayName") or entry.get("adminConsentDisplayName")
            if title:
                titles[value] = str(title)
        web = [str(u) for u in spec.get("redirectUris", [])]
        spa = [
            str(u) for u in spec.get("spaRedirectUris", spec.get("spa", {}).get("redirectUris", []))
        ]
        both = sorted(set(web) & set(spa))
        if both:
            # Entra keeps one platform per URI: a URI is either web or spa, never both.
            raise SeedError(f"app {spec.get('key')!r}: {both[0]} is both a web and a spa URI")
        delegated: dict[str, set[str]] = {}
        application: dict[str, set[str]] = {}
        for resource_ref, perms in spec.get("requiredResourceAccess", {}).items():
            key = _resource_key(resource_ref)
            if perms.get("delegated"):
                delegated[key] = set(perms["delegated"])
            if perms.get("application"):
                application[key] = set(perms["application"])
        return App(
            client_id=client_id,
            key=str(spec.get("key") or client_id),
            display_name=str(spec.get("displayName") or spec.get("key") or client_id),
            home_tenant_id=home_id,
            sign_in_audience=str(spec.get("signInAudience", "AzureADMultipleOrgs")),
            redirect_uris=web,
            identifier_uris=list(spec.get("identifierUris", [])),
            app_roles=roles,
            exposed_scopes=scopes,
            required_delegated=delegated,
            required_application=application,
            optional_claims=[str(c) for c in spec.get("optionalClaims", [])],
            spa_redirect_uris=spa,
            admin_scopes=admin_scopes,
            scope_titles=titles,
        )

    def _seed_tenant(
        self, spec: dict[str, Any], tid: str, key: str, app_keys: dict[str, App]
    ) -> tuple[Tenant, dict[str, Any]]:
        domain = str(spec["domain"]).lower()
        tenant = Tenant(
            id=tid, domain=domain, display_name=str(spec.get("displayName", domain)), key=key
        )
        info: dict[str, Any] = {
            "id": tid,
            "domain": domain,
            "displayName": tenant.display_name,
            "users": {},
            "roomLists": {},
        }
        by_nick: dict[str, User] = {}
        for u in spec.get("users", []):
            nick = str(u["mailNickname"])
            upn = f"{nick}@{domain}"
            kind = str(u.get("type", "person"))
            user = User(
                id=str(u.get("id") or uuid.uuid5(uuid.UUID(tid), nick)),
                tenant_id=tid,
                user_principal_name=upn,
                mail=upn,
                display_name=str(u.get("displayName", nick)),
                mail_nickname=nick,
                kind=kind,
                given_name=u.get("givenName"),
                surname=u.get("surname"),
                job_title=u.get("jobTitle"),
                directory_roles=list(u.get("directoryRoles", [])),
                room=dict(u.get("room", {})),
                extra=dict(u.get("extra", {})),
                account_enabled=kind not in RESOURCE_KINDS,
                calendar_permission=str(u.get("calendarPermission", "AvailabilityOnly")),
                extension_attributes=dict(u.get("extensionAttributes", {})),
            )
            entry: dict[str, Any] = {
                "id": user.id,
                "userPrincipalName": upn,
                "mail": upn,
                "displayName": user.display_name,
                "type": kind,
            }
            if kind not in RESOURCE_KINDS:
                # Passwords are generated, never stored in the scenario nor in clear text here.
                password = "Pw-" + secrets.token_urlsafe(12)
                user.set_password(password)
                entry["password"] = password
            tenant.users[user.id] = user
            by_nick[nick] = user
            info["users"][nick] = entry

        def user_ref(ref: str) -> User:
            found = by_nick.get(ref) or by_nick.get(ref.partition("@")[0])
            if found is None:
                raise SeedError(f"tenant {key}: unknown user {ref!r}")
            return found

        for rl in spec.get("roomLists", []):
            nick = str(rl["mailNickname"])
            room_list = RoomList(
                id=str(rl.get("id") or uuid.uuid5(uuid.UUID(tid), "roomlist:" + nick)),
                tenant_id=tid,
                display_name=str(rl.get("displayName", nick)),
                email_address=f"{nick}@{domain}",
                room_ids=[user_ref(r).id for r in rl.get("rooms", [])],
            )
            tenant.room_lists[room_list.id] = room_list
            info["roomLists"][nick] = {"id": room_list.id, "emailAddress": room_list.email_address}
        self._seed_places(tenant, spec, tid, user_ref)
        for cal in spec.get("calendars", []):
            tenant.calendars.append(
                CalendarSpec(tid, user_ref(cal["owner"]).id, str(cal["name"]), cal.get("color"))
            )
        for share in spec.get("calendarShares", []):
            tenant.calendar_shares.append(
                CalendarShare(
                    tid,
                    user_ref(share["owner"]).id,
                    share.get("calendar"),
                    user_ref(share["sharedWith"]).id,
                    str(share.get("role", "read")),
                )
            )
        for rbac in spec.get("rbacAssignments", []):
            role = str(rbac["role"])
            if role not in RBAC_ROLES:
                raise SeedError(f"unknown Exchange RBAC role {role!r}")
            tenant.rbac.append(
                RbacAssignment(
                    tid,
                    self._app_ref(rbac["app"], app_keys).client_id,
                    role,
                    frozenset(user_ref(m).id for m in rbac.get("mailboxes", [])),
                )
            )
        self.tenants[tid] = tenant
        self._domains[domain] = tid
        for consent in spec.get("adminConsents", []):
            app = self._app_ref(consent["app"], app_keys)
            if "resource" in consent:
                # One API's delegated scopes: {"app", "resource": <app key or id>, "delegated": [..]}
                api = self._app_ref(consent["resource"], app_keys)
                scopes = [str(s) for s in consent.get("delegated", [])]
                unknown = sorted(set(scopes) - set(api.exposed_scopes))
                if unknown:
                    raise SeedError(f"{api.key} exposes no scope {unknown[0]!r}")
                self.grant_delegated(tid, app.client_id, ALL_PRINCIPALS, api.client_id, scopes)
                continue
            if consent.get("required", True) and "delegated" not in consent:
                self.admin_consent_required(tid, app.client_id)
            else:
                for resource, scopes in consent.get("delegated", {}).items():
                    self.grant_delegated(
                        tid, app.client_id, ALL_PRINCIPALS, self._res(resource, app_keys), scopes
                    )
                for resource, roles in consent.get("application", {}).items():
                    self.grant_application(tid, app.client_id, self._res(resource, app_keys), roles)
        for consent in spec.get("userConsents", []):
            app = self._app_ref(consent["app"], app_keys)
            for resource, scopes in consent.get("delegated", {}).items():
                self.grant_delegated(
                    tid,
                    app.client_id,
                    user_ref(consent["user"]).id,
                    self._res(resource, app_keys),
                    scopes,
                )
        for assignment in spec.get("appRoleAssignments", []):
            client = self._app_ref(assignment["app"], app_keys)
            resource_app = self._app_ref(assignment["resource"], app_keys)
            if resource_app.role(assignment["role"]) is None:
                raise SeedError(f"{resource_app.key} has no app role {assignment['role']!r}")
            self.grant_application(
                tid, client.client_id, resource_app.client_id, [assignment["role"]]
            )
        for assignment in spec.get("userRoleAssignments", []):
            resource_app = self._app_ref(assignment["resource"], app_keys)
            if resource_app.role(assignment["role"]) is None:
                raise SeedError(f"{resource_app.key} has no app role {assignment['role']!r}")
            self.assign_user_role(
                tid, user_ref(assignment["user"]).id, resource_app.client_id, assignment["role"]
            )
        return tenant, info

    @staticmethod
    def _seed_places(
        tenant: Tenant, spec: dict[str, Any], tid: str, user_ref: Callable[[str], User]
    ) -> None:
        """The scenario's `places` (devstack/m365/README.md): parents before children."""
        ids: dict[str, str] = {}

        def place_id(key: str) -> str:
            return ids.get(key) or str(uuid.uuid5(uuid.UUID(tid), "place:" + key))

        for p in spec.get("places", []):
            key, kind = str(p["key"]), str(p["type"])
            if kind not in PLACE_TYPES:
                raise SeedError(f"tenant {tenant.key}: place {key!r} has unknown type {kind!r}")
            parent = p.get("parent")
            if parent is not None and parent not in ids:
                raise SeedError(f"tenant {tenant.key}: place {key!r}: unknown parent {parent!r}")
            mode = p.get("mode")
            if kind in ("desk", "workspace") and mode not in PLACE_MODES:
                raise SeedError(f"tenant {tenant.key}: place {key!r}: mode must be one of "
                                f"{', '.join(PLACE_MODES)}")  # fmt: skip
            mailbox = user_ref(str(p["mailbox"])) if p.get("mailbox") else None
            if mailbox is not None and mailbox.kind != kind:
                raise SeedError(f"tenant {tenant.key}: place {key!r}: mailbox is not a {kind}")
            data = {k: v for k, v in p.items() if k not in ("key", "type", "parent", "mailbox")}
            if "assignedTo" in data:
                data["assignedTo"] = user_ref(str(data["assignedTo"])).id
            ids[key] = place_id(key)
            tenant.places.append(
                Place(
                    id=ids[key], key=key, type=kind,
                    display_name=str(p.get("displayName", key)),
                    parent_id=ids[parent] if parent is not None else None,
                    mailbox=mailbox.id if mailbox is not None else None, data=data,
                )
            )  # fmt: skip
        for user in tenant.users.values():
            parent = (user.room or {}).get("parent")
            if user.kind == "room" and parent is not None:
                if parent not in ids:
                    raise SeedError(f"tenant {tenant.key}: room {user.mail_nickname!r}: "
                                    f"unknown parent {parent!r}")  # fmt: skip
                user.room["parentId"] = ids[parent]

    def _res(self, ref: str, app_keys: dict[str, App]) -> str:
        key = _resource_key(ref)
        if key.startswith("app:"):
            return self._app_ref(key[4:], app_keys).client_id
        return key

    def _fix_app_refs(self, app_keys: dict[str, App]) -> None:
        """Turn `app:<ref>` resource keys of required permissions into client ids."""
        for app in app_keys.values():
            for table in (app.required_delegated, app.required_application):
                for key in [k for k in table if k.startswith("app:")]:
                    ref = key[4:]
                    target = next(
                        (a for a in app_keys.values() if ref in (a.key, *a.identifier_uris)),
                        None,
                    ) or self.app(ref)
                    if target is None:
                        raise SeedError(f"{app.key}: unknown resource {ref!r}")
                    table[target.client_id] = table.pop(key)


def _resource_key(ref: str) -> str:
    """Resource refs in a scenario: Graph/KV URLs, an app key, a client id or an identifier URI."""
    low = ref.lower().rstrip("/")
    if low in (GRAPH_RESOURCE, GRAPH_APP_ID, "graph"):
        return GRAPH_RESOURCE
    if low in (KEY_VAULT_RESOURCE, KEY_VAULT_APP_ID, "keyvault"):
        return KEY_VAULT_RESOURCE
    return f"app:{ref}"  # resolved to a client id once all apps of the scenario exist


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, 10_000)


def _freshen(scenario: dict[str, Any]) -> None:
    """New tenant ids, domains and client ids throughout a scenario (keys stay the same)."""
    suffix = secrets.token_hex(4)
    for tenant in scenario.get("tenants", []):
        tenant.setdefault("key", tenant["domain"])
        tenant["id"] = str(uuid.uuid4())
        label = str(tenant["domain"]).split(".")[0]
        tenant["domain"] = f"{label}-{suffix}.example"
        for user in tenant.get("users", []):
            user.pop("id", None)
        for room_list in tenant.get("roomLists", []):
            room_list.pop("id", None)
    for app in scenario.get("apps", []):
        app.setdefault("key", app.get("clientId") or app.get("displayName"))
        app["clientId"] = str(uuid.uuid4())
