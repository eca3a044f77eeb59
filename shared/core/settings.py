"""Application settings: one typed, frozen object, read lazily from app settings (environment).

Nothing reads the environment at import time (an import-time failure would make every function
silently disappear after deploy). `get_settings()` reads and validates everything on first use and,
if anything is missing or malformed, raises one `SettingsError` naming every problem at once.

Endpoints are settings so one code path serves Azure and the local stack. The table is the
documentation of every setting; tests/unit/test_settings.py holds it to `load_settings` (names,
defaults, which are required) and to `TIMER_SCHEDULES` (whose "default" is the value to set: the
host has no default for a timer schedule).

| setting | meaning | default |
|---|---|---|
| `AzureWebJobsStorage` | storage connection string (local stack / Azurite) | - |
| `AzureWebJobsStorage__accountName` | or: account name for identity-based access (Azure) | - |
| `AzureWebJobsStorage__clientId` | user-assigned identity for storage (Azure) | - |
| `BB_KEY_VAULT_URL` | Key Vault holding refresh tokens, client secret, clientState keys | required |
| `BB_AUTHORITY_HOST` | Microsoft identity platform host | `https://login.microsoftonline.com` |
| `BB_GRAPH_BASE_URL` | Microsoft Graph base URL including version | `https://graph.microsoft.com/v1.0` |
| `BB_CA_BUNDLE` | extra CA file trusted for the endpoints above (local TLS) | none |
| `BB_CLIENT_ID` | BookingBridge's own (multi-tenant) app registration | required |
| `BB_PUBLIC_BASE_URL` | where Microsoft reaches this app, e.g. `https://x.azurewebsites.net/api` | required |
| `BB_API_AUDIENCE` | `aud` of bearer tokens the API accepts (e.g. `api://bookingbridge`) | required |
| `BB_API_TENANT_ID` | tenant whose issuer signs portal/admin bearer tokens | required |
| `BB_RETURN_URL_ORIGINS` | comma-separated origins a connect flow may return to (`https://portal.contoso.com`) | the origin of `BB_PUBLIC_BASE_URL` |
| `BB_CORS_ORIGINS` | comma-separated exact origins of browser frontends that may call the API cross-origin (`https://portal.contoso.com`), or `*` for any origin (then never with credentials); empty = no CORS (shared/api/cors.py) | none |
| `BB_CORS_ALLOW_CREDENTIALS` | answer listed origins with `Access-Control-Allow-Credentials: true` (cookies; bearer tokens do not need it); refused together with `*` | `false` |
| `BB_CLIENT_SECRET_NAME` | Key Vault secret holding the app registration's client secret (used unless a certificate is named) | `bookingbridge-client-secret` |
| `BB_CLIENT_CERTIFICATE_NAME` | Key Vault secret holding a PEM (private key + certificate); when set, the app authenticates with the certificate instead of the secret | none |
| `BB_KEEPALIVE_SCHEDULE` | NCRONTAB of the timer that refreshes idle delegated grants (read by the host as `%BB_KEEPALIVE_SCHEDULE%`; must be set, see `TIMER_SCHEDULES`) | `0 0 3 * * *` (daily) |
| `BB_SYNC_WINDOW_DAYS` | days ahead each mapped calendar is mirrored (delta window: today − 1 day … today + N days, UTC; 1–365) | `60` |
| `BB_POLL_SCHEDULE` | NCRONTAB of the timer that polls calendars Graph cannot notify us about (`%BB_POLL_SCHEDULE%`; must be set) | `*/30 * * * * *` (every 30 s) |
| `BB_POLL_MIN_SECONDS` | a polled calendar's interval after a round that found changes (2–3600) | `30` |
| `BB_POLL_MAX_SECONDS` | the interval it doubles to while idle (≥ the minimum, ≤ 86400) | `300` |
| `BB_RECONCILE_SCHEDULE` | NCRONTAB of the reconciliation tick: a delta round for every mapped calendar that is due (shared/sync/polling.py; `%BB_RECONCILE_SCHEDULE%`; must be set) | `0 */30 * * * *` (every 30 min) |
| `BB_RECONCILE_TRUST_MINUTES` | how long a calendar with a healthy subscription and no loss signal is trusted after its last successful round before the tick reconciles it (0: every tick, 0–1440) | `240` (4 h) |
| `BB_RENEW_SCHEDULE` | NCRONTAB of the timer that renews Graph subscriptions before they expire (`%BB_RENEW_SCHEDULE%`; must be set) | `0 */30 * * * *` (every 30 min) |
| `BB_SUBSCRIPTION_MINUTES` | lifetime asked for a Graph subscription, in minutes (≥ 60); capped at Graph's 4230 for Outlook events | `4230` |
| `BB_RENEW_MARGIN_MINUTES` | renew a subscription once it expires within this many minutes (≥ 30) | `1440` (24 h) |
| `BB_LIVE_CHECK` | before moving a booking (and before creating one when `BB_INVITE_BOOKER` is on), read the mapped calendar's slot on Graph (closes the gap with Outlook bookings not yet synced; a create always checks after its write) | `true` |
| `BB_BOOKING_SUBJECT` | subject of the Outlook event of a booking; placeholders `{resourceName}`, `{bookerName}`, `{bookerEmail}`, `{title}` | `{resourceName} – {bookerName}` |
| `BB_INVITE_BOOKER` | add the booker as an attendee of the event (Exchange then mails them an invitation) | `false` |
| `BB_OUTBOX_MAX_ATTEMPTS` | write-through attempts of a booking change before it is marked failed (1–50) | `8` |
| `BB_OUTBOX_BACKOFF_SECONDS` | delay before the first outbox retry, doubled per attempt (1–3600) | `30` |
| `BB_OUTBOX_BACKOFF_MAX_SECONDS` | the longest delay between outbox retries (≥ the first, ≤ 86400; 8 attempts ≈ 45 min with the defaults) | `900` |
| `BB_CHECKS_SWEEP_SCHEDULE` | NCRONTAB of the go-live check sweeper: removes the test artefacts of check runs that died (`%BB_CHECKS_SWEEP_SCHEDULE%`; must be set) | `0 */5 * * * *` (every 5 min) |
| `BB_ROLLUP_SCHEDULE` | NCRONTAB of the analytics rollup timer: each building's local days that closed since its last rollup (`%BB_ROLLUP_SCHEDULE%`; must be set) | `0 15 * * * *` (hourly, at :15) |
| `BB_RELEASE_SCHEDULE` | NCRONTAB of the no-show release timer: releases started bookings nobody checked in to after their grace period, where auto-release is on (`%BB_RELEASE_SCHEDULE%`; must be set) | `0 * * * * *` (every minute) |
| `BB_CHECKS_OUTLOOK_SECONDS` | how long a go-live check waits for an Outlook change to reach availability before it names the notification path (5–900) | `60` |
| `BB_CHECKS_CONCURRENCY` | mapped resources a go-live check runs at once (1–20) | `4` |
| `BB_WEBHOOKS_ALLOW_LOOPBACK` | outgoing webhooks (issue 16) may target loopback addresses, over http too (the local stack and tests only; never in Azure) | `false` |
| `BB_WEBHOOK_RETRY_BASE_SECONDS` | delay before an outgoing webhook's first retry, doubled per attempt, with jitter (1–3600) | `30` |
| `BB_WEBHOOK_RETRY_MAX_SECONDS` | the longest delay between retries (≥ the first, ≤ 86400) | `7200` |
| `BB_WEBHOOK_RETRY_WINDOW_SECONDS` | how long a delivery is retried after the event (1–604800; 26 h by default, at least 24 h in production) | `93600` |
| `BB_WEBHOOK_DISABLE_AFTER_SECONDS` | an endpoint whose deliveries fail for this long is disabled (60–2592000; 3 days) | `259200` |
| `BB_WEBHOOK_SECRET_GRACE_SECONDS` | after a rotation, the previous signing secret stays valid this long (0–604800; 24 h) | `86400` |
| `BB_NOTIFICATION_DELIVERY` | how Graph delivers change and lifecycle notifications: `webhook` (to `BB_PUBLIC_BASE_URL`/graph/notifications and /graph/lifecycle) or `eventhub` (to an Azure Event Hub: Graph sends with the connection string in the Key Vault secret `BB_EVENTHUB_SECRET_URL`, the `graph_eventhub_notifications` trigger reads the hub through the host's connection `BB_EVENTHUB`; issue 17) | `webhook` |
| `BB_EVENTHUB_SECRET_URL` | with `eventhub` delivery (required then): the Key Vault secret Graph reads the Event Hub's send connection string from, `https://<vault>.vault.azure.net/secrets/<name>` (no version: Graph reads the current one) | none |
| `BB_EVENTHUB_TENANT` | with `eventhub` delivery (required then): the tenant of that Key Vault's Azure subscription, a domain (`contoso.onmicrosoft.com`) or a tenant id, as Graph's `?tenantId=` | none |
| `AZURE_CLIENT_ID` | managed identity client id (Azure) or local credential's client | none |
| `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET` | local stack only: a client-secret credential stands in for the managed identity | none |

The app's own credential towards the identity platform (code redemption, refresh, client
credentials): `BB_CLIENT_CERTIFICATE_NAME` set → certificate; otherwise the client secret named by
`BB_CLIENT_SECRET_NAME`. A federated credential (managed identity as the app's credential) is not
supported yet.
"""

from __future__ import annotations

import functools
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
# A Key Vault secret URL without a version, in any Azure cloud (vault.azure.net, vault.azure.cn,
# vault.usgovcloudapi.net, ...): what Graph's `EventHub:` notification URL names.
_KEY_VAULT_SECRET_URL = re.compile(
    r"^https://[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]\.vault\.[a-z0-9.]+/secrets/[0-9a-zA-Z-]{1,127}$"
)
NOTIFICATION_DELIVERIES = ("webhook", "eventhub")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# A tenant as Graph's `?tenantId=` takes it: its id, or a DNS name (a verified domain).
_TENANT = re.compile(
    _GUID.pattern
    + r"|^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$"
)
# What a booking's Outlook subject may name (BB_BOOKING_SUBJECT).
SUBJECT_PLACEHOLDERS = frozenset({"resourceName", "bookerName", "bookerEmail", "title"})

# The timers' schedules, as NCRONTAB. The Functions host reads them (`%BB_..._SCHEDULE%` in
# functions/), the app does not: a timer whose setting is missing does not index, so these are not
# defaults but the values every deployment sets (infra/app/api.bicep and local.settings.example.json,
# both tested against this; devstack/stack.py). `load_settings` checks a set schedule's shape so a
# typo is named with the other problems instead of silently dropping a timer.
TIMER_SCHEDULES = {
    "BB_KEEPALIVE_SCHEDULE": "0 0 3 * * *",  # refresh idle delegated grants: daily
    "BB_POLL_SCHEDULE": "*/30 * * * * *",  # poll calendars Graph cannot notify about: 30 s
    "BB_RECONCILE_SCHEDULE": "0 */30 * * * *",  # a round for every calendar that is due: 30 min
    "BB_RENEW_SCHEDULE": "0 */30 * * * *",  # renew Graph subscriptions before they expire: 30 min
    "BB_CHECKS_SWEEP_SCHEDULE": "0 */5 * * * *",  # clean up go-live check runs that died: 5 min
    "BB_ROLLUP_SCHEDULE": "0 15 * * * *",  # analytics: roll up the local days that closed: hourly
    "BB_RELEASE_SCHEDULE": "0 * * * * *",  # release no-shows after their grace period: 1 min
}


class SettingsError(RuntimeError):
    """One or more settings are missing or malformed; the message names every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid app settings: " + "; ".join(problems))


@dataclass(frozen=True)
class StorageSettings:
    """Either a connection string (Azurite, or a key-based account) or identity-based endpoints."""

    connection_string: str | None
    table_endpoint: str | None
    queue_endpoint: str | None
    client_id: str | None


@dataclass(frozen=True)
class IdentitySettings:
    """How the app itself authenticates to Azure resources (Key Vault; storage when identity-based)."""

    client_id: str | None
    tenant_id: str | None
    client_secret: str | None  # local stack only; in Azure the managed identity needs none


@dataclass(frozen=True)
class Settings:
    # No field defaults: `load_settings` is the one place a default is written (each once).
    storage: StorageSettings
    key_vault_url: str
    authority_host: str
    graph_base_url: str
    ca_bundle: str | None
    client_id: str
    public_base_url: str
    api_audience: str
    api_tenant_id: str
    identity: IdentitySettings
    return_url_origins: tuple[str, ...]
    cors_origins: tuple[str, ...]  # exact origins, or ("*",): any origin
    cors_allow_credentials: bool
    client_secret_name: str
    client_certificate_name: str | None
    sync_window_days: int
    poll_min_seconds: int
    poll_max_seconds: int
    reconcile_trust_minutes: int
    subscription_minutes: int
    renew_margin_minutes: int
    live_check: bool
    booking_subject: str
    invite_booker: bool
    outbox_max_attempts: int
    outbox_backoff_seconds: int
    outbox_backoff_max_seconds: int
    checks_outlook_seconds: int
    checks_concurrency: int
    webhooks_allow_loopback: bool
    webhook_retry_base_seconds: int
    webhook_retry_max_seconds: int
    webhook_retry_window_seconds: int
    webhook_disable_after_seconds: int
    webhook_secret_grace_seconds: int
    notification_delivery: str  # NOTIFICATION_DELIVERIES
    eventhub_secret_url: str | None
    eventhub_tenant: str | None

    @property
    def verify(self) -> str | bool:
        """What TLS clients should trust: our CA file if configured, else the system store."""
        return self.ca_bundle or True


class _Reader:
    """Collects problems instead of failing on the first, so one error names them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def required(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            self.problems.append(f"{name} is missing")
            return ""
        return value

    def url(self, name: str, default: str | None = None, *, https: bool = True) -> str:
        value = self.get(name, default) if default is not None else self.required(name)
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in (("https",) if https else ("https", "http")) or not parts.netloc:
            wanted = "an https URL" if https else "an http(s) URL"
            self.problems.append(f"{name} must be {wanted}, got {value!r}")
            return ""
        return value.rstrip("/")

    def guid(self, name: str, *, required: bool = True) -> str | None:
        value = self.required(name) if required else self.get(name)
        if value and not _GUID.match(value):
            self.problems.append(f"{name} must be a GUID")
        return value

    def origins(self, name: str, default: str) -> tuple[str, ...]:
        raw = self.get(name)
        if raw is None:
            return (default,) if default else ()
        found: list[str] = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            origin = origin_of(item)
            if origin is None or origin != item.rstrip("/").lower():
                self.problems.append(f"{name}: {item!r} is not an origin like https://host[:port]")
                continue
            found.append(origin)
        return tuple(found)

    def secret_name(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name, default)
        if value is not None and not _SECRET_NAME.match(value):
            self.problems.append(f"{name} must be a Key Vault secret name (1-127 of 0-9a-zA-Z-)")
        return value

    def schedule(self, name: str) -> None:
        """Only checked: the host reads timer schedules, the app never uses them (TIMER_SCHEDULES)."""
        value = self.get(name)
        if value is not None and len(value.split()) != 6:
            self.problems.append(f"{name} must be a 6-field NCRONTAB expression")

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            self.problems.append(f"{name} must be an integer from {minimum} to {maximum}")
            return default
        return value

    def flag(self, name: str, default: str) -> bool:
        """A boolean; the default is spelled as the app setting would be ("true" / "false")."""
        raw = (self.get(name, default) or default).lower()
        if raw in ("true", "1", "yes"):
            return True
        if raw in ("false", "0", "no"):
            return False
        self.problems.append(f"{name} must be true or false")
        return default == "true"

    def template(self, name: str, default: str, placeholders: frozenset[str]) -> str:
        """A `str.format` template using only the named placeholders (checked once, here)."""
        value = self.get(name, default) or default
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError:
            used = {"?"}
        if not used <= placeholders or len(value) > 255:
            names = ", ".join("{" + p + "}" for p in sorted(placeholders))
            self.problems.append(f"{name} may use only {names} (≤ 255 characters)")
            return default
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.get(name, default) or default
        if value not in options:
            self.problems.append(f"{name} must be one of {', '.join(options)}")
            return default
        return value

    def pattern(self, name: str, shape: re.Pattern[str], what: str) -> str | None:
        """An optional value of a fixed shape (`what` describes it in the problem)."""
        value = self.get(name)
        if value is not None and not shape.match(value):
            self.problems.append(f"{name} must be {what}")
            return None
        return value

    def file(self, name: str) -> str | None:
        value = self.get(name)
        if value and not Path(value).is_file():
            self.problems.append(f"{name} names a file that does not exist: {value}")
        return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build settings from a mapping (the environment, or a test's dict)."""
    r = _Reader(env)
    connection_string = r.get("AzureWebJobsStorage")
    account = r.get("AzureWebJobsStorage__accountName")
    if connection_string is None and account is None:
        r.problems.append("AzureWebJobsStorage or AzureWebJobsStorage__accountName is missing")
    storage = StorageSettings(
        connection_string=connection_string,
        table_endpoint=None if connection_string else f"https://{account}.table.core.windows.net",
        queue_endpoint=None if connection_string else f"https://{account}.queue.core.windows.net",
        client_id=r.get("AzureWebJobsStorage__clientId"),
    )
    # Plain http is allowed here only because the local Functions host has no TLS.
    public_base_url = r.url("BB_PUBLIC_BASE_URL", https=False)
    settings = Settings(
        storage=storage,
        # Key Vault URLs end with "/" by convention; the client accepts either.
        key_vault_url=r.url("BB_KEY_VAULT_URL"),
        authority_host=r.url("BB_AUTHORITY_HOST", "https://login.microsoftonline.com"),
        graph_base_url=r.url("BB_GRAPH_BASE_URL", "https://graph.microsoft.com/v1.0"),
        ca_bundle=r.file("BB_CA_BUNDLE"),
        client_id=r.guid("BB_CLIENT_ID") or "",
        public_base_url=public_base_url,
        api_audience=r.required("BB_API_AUDIENCE"),
        api_tenant_id=r.guid("BB_API_TENANT_ID") or "",
        identity=IdentitySettings(
            client_id=r.get("AZURE_CLIENT_ID"),
            tenant_id=r.get("AZURE_TENANT_ID"),
            client_secret=r.get("AZURE_CLIENT_SECRET"),
        ),
        return_url_origins=r.origins("BB_RETURN_URL_ORIGINS", origin_of(public_base_url) or ""),
        cors_origins=("*",)
        if r.get("BB_CORS_ORIGINS") == "*"
        else r.origins("BB_CORS_ORIGINS", ""),
        cors_allow_credentials=r.flag("BB_CORS_ALLOW_CREDENTIALS", "false"),
        client_secret_name=r.secret_name("BB_CLIENT_SECRET_NAME", "bookingbridge-client-secret")
        or "",
        client_certificate_name=r.secret_name("BB_CLIENT_CERTIFICATE_NAME"),
        sync_window_days=r.integer("BB_SYNC_WINDOW_DAYS", 60, minimum=1, maximum=365),
        poll_min_seconds=r.integer("BB_POLL_MIN_SECONDS", 30, minimum=2, maximum=3600),
        poll_max_seconds=r.integer("BB_POLL_MAX_SECONDS", 300, minimum=2, maximum=86400),
        reconcile_trust_minutes=r.integer(
            "BB_RECONCILE_TRUST_MINUTES", 240, minimum=0, maximum=1440
        ),
        # More than 4230 is accepted and capped where it is used (shared/subscriptions/manage.py).
        subscription_minutes=r.integer(
            "BB_SUBSCRIPTION_MINUTES", 4230, minimum=60, maximum=525_600
        ),
        renew_margin_minutes=r.integer(
            "BB_RENEW_MARGIN_MINUTES", 1440, minimum=30, maximum=525_600
        ),
        live_check=r.flag("BB_LIVE_CHECK", "true"),
        booking_subject=r.template(
            "BB_BOOKING_SUBJECT", "{resourceName} – {bookerName}", SUBJECT_PLACEHOLDERS
        ),
        invite_booker=r.flag("BB_INVITE_BOOKER", "false"),
        outbox_max_attempts=r.integer("BB_OUTBOX_MAX_ATTEMPTS", 8, minimum=1, maximum=50),
        outbox_backoff_seconds=r.integer("BB_OUTBOX_BACKOFF_SECONDS", 30, minimum=1, maximum=3600),
        outbox_backoff_max_seconds=r.integer(
            "BB_OUTBOX_BACKOFF_MAX_SECONDS", 900, minimum=1, maximum=86400
        ),
        checks_outlook_seconds=r.integer("BB_CHECKS_OUTLOOK_SECONDS", 60, minimum=5, maximum=900),
        checks_concurrency=r.integer("BB_CHECKS_CONCURRENCY", 4, minimum=1, maximum=20),
        webhooks_allow_loopback=r.flag("BB_WEBHOOKS_ALLOW_LOOPBACK", "false"),
        webhook_retry_base_seconds=r.integer(
            "BB_WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1, maximum=3600
        ),
        webhook_retry_max_seconds=r.integer(
            "BB_WEBHOOK_RETRY_MAX_SECONDS", 7200, minimum=1, maximum=86400
        ),
        webhook_retry_window_seconds=r.integer(
            "BB_WEBHOOK_RETRY_WINDOW_SECONDS", 93600, minimum=1, maximum=604800
        ),
        webhook_disable_after_seconds=r.integer(
            "BB_WEBHOOK_DISABLE_AFTER_SECONDS", 259200, minimum=60, maximum=2592000
        ),
        webhook_secret_grace_seconds=r.integer(
            "BB_WEBHOOK_SECRET_GRACE_SECONDS", 86400, minimum=0, maximum=604800
        ),
        notification_delivery=r.choice(
            "BB_NOTIFICATION_DELIVERY", "webhook", NOTIFICATION_DELIVERIES
        ),
        eventhub_secret_url=r.pattern(
            "BB_EVENTHUB_SECRET_URL",
            _KEY_VAULT_SECRET_URL,
            "a Key Vault secret URL, https://<vault>.vault.azure.net/secrets/<name>",
        ),
        eventhub_tenant=r.pattern(
            "BB_EVENTHUB_TENANT", _TENANT, "a tenant id or a domain name (contoso.com)"
        ),
    )
    for schedule in TIMER_SCHEDULES:
        r.schedule(schedule)
    if settings.cors_origins == ("*",) and settings.cors_allow_credentials:
        # The Fetch standard refuses credentials with `*`; echoing any origin instead would hand
        # every website the signed-in user's cookies.
        r.problems.append("BB_CORS_ALLOW_CREDENTIALS cannot be true when BB_CORS_ORIGINS is *")
    if settings.outbox_backoff_max_seconds < settings.outbox_backoff_seconds:
        r.problems.append(
            "BB_OUTBOX_BACKOFF_MAX_SECONDS must not be below BB_OUTBOX_BACKOFF_SECONDS"
        )
    if settings.webhook_retry_max_seconds < settings.webhook_retry_base_seconds:
        r.problems.append(
            "BB_WEBHOOK_RETRY_MAX_SECONDS must not be below BB_WEBHOOK_RETRY_BASE_SECONDS"
        )
    if settings.poll_max_seconds < settings.poll_min_seconds:
        r.problems.append("BB_POLL_MAX_SECONDS must not be below BB_POLL_MIN_SECONDS")
    if settings.notification_delivery == "eventhub":
        # Graph's EventHub: URL needs both (shared/subscriptions/eventhub.py); a set but malformed
        # one is already named above.
        wanted = "(BB_NOTIFICATION_DELIVERY is eventhub)"
        if r.get("BB_EVENTHUB_SECRET_URL") is None:
            r.problems.append(f"BB_EVENTHUB_SECRET_URL is missing {wanted}")
        if r.get("BB_EVENTHUB_TENANT") is None:
            r.problems.append(f"BB_EVENTHUB_TENANT is missing {wanted}")
    if settings.identity.client_secret and not (
        settings.identity.client_id and settings.identity.tenant_id
    ):
        r.problems.append("AZURE_CLIENT_SECRET needs AZURE_CLIENT_ID and AZURE_TENANT_ID")
    if r.problems:
        raise SettingsError(r.problems)
    return settings


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, lower-cased; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use. Tests call `get_settings.cache_clear()`."""
    return load_settings(os.environ)
