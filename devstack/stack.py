"""The whole local stack in one call: Azurite, the Microsoft 365 emulator, the Functions host.

`make run` (devstack/run.py) and the end-to-end test fixtures both use `start_stack()`, so what the
tests exercise is exactly what a developer runs. Everything binds to loopback; the stack's files
(TLS, settings, keys, logs, Azurite data when persistent) live under one state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack.azurite import Azurite, start_azurite
from devstack.procs import REPO_ROOT, free_port
from devstack.tls import ensure_tls
from shared.core.settings import TIMER_SCHEDULES

DEMO_SCENARIO = REPO_ROOT / "devstack" / "scenarios" / "demo.json"
DEMO_BUILDING = "demo-building"
# The demo building's entity (buildings are things since issue 20): created when the stack starts,
# so the console and the tests find it; the demo's resources are in the same zone.
DEMO_BUILDING_BODY = {"name": "Demo HQ", "timeZone": "Europe/Amsterdam", "address": "Demo Street 1"}


@dataclass
class Stack:
    state_dir: Path
    azurite: Azurite
    emulator: Any  # devstack.m365.RunningEmulator
    host: Any  # devstack.host.HostProcess
    settings: dict[str, str]
    endpoints: dict[str, Any]
    _stopped: bool = field(default=False, repr=False)

    @property
    def functions_url(self) -> str:
        return str(self.endpoints["functionsBaseUrl"])

    @contextlib.contextmanager
    def app_environment(self) -> Iterator[None]:
        """Point shared/ in this process at the stack, for tests and benches that call the
        services directly (e.g. with an injected clock): the stack's settings in os.environ, and
        cached clients and services rebuilt on the way in and out."""
        from shared import wiring

        saved = dict(os.environ)
        os.environ.update(self.settings)
        wiring.reset()  # also the process's clients and settings
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            wiring.reset()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for piece in (self.host, self.emulator, self.azurite):
            if piece is not None:
                piece.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def app_settings(azurite: Azurite, emulator: Any, functions_base_url: str) -> dict[str, str]:
    """The app settings that point the unmodified app at the local stack."""
    seed = emulator.seed
    tenant = seed["tenant"]
    app = seed["apps"]["bookingbridge"]
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "BB_KEY_VAULT_URL": emulator.key_vault_url,
        "BB_AUTHORITY_HOST": emulator.base_url,
        "BB_GRAPH_BASE_URL": emulator.base_url + "/v1.0",
        "BB_CA_BUNDLE": str(emulator.ca_bundle),
        "BB_CLIENT_ID": app["clientId"],
        "BB_PUBLIC_BASE_URL": functions_base_url,
        "BB_API_AUDIENCE": app.get("identifierUri") or "api://bookingbridge",
        "BB_API_TENANT_ID": tenant["id"],
        # On the local stack a client-secret credential stands in for the managed identity.
        "AZURE_TENANT_ID": tenant["id"],
        "AZURE_CLIENT_ID": app["clientId"],
        "AZURE_CLIENT_SECRET": app["clientSecret"],
        # Connect flows may return to the stack itself (endpoints.json `returnUrl`).
        "BB_RETURN_URL_ORIGINS": _origin(functions_base_url),
        "BB_CLIENT_SECRET_NAME": CLIENT_SECRET_NAME,
        # Outgoing webhooks may reach receivers on this machine (loopback, http) (issue 16).
        "BB_WEBHOOKS_ALLOW_LOOPBACK": "true",
        # Every timer needs its schedule or the host cannot index it; tests run timers by hand.
        **TIMER_SCHEDULES,
    }


CLIENT_SECRET_NAME = "bookingbridge-client-secret"


def _first_tenant(seed: dict[str, Any]) -> dict[str, Any]:
    """The seed's first tenant (`tenants` is keyed by scenario key; `tenant` is the first)."""
    if "tenant" in seed:
        return dict(seed["tenant"])
    tenants = seed["tenants"]
    return dict(tenants[0] if isinstance(tenants, list) else next(iter(tenants.values())))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def seed_app_secret(emulator: Any) -> None:
    """Put the app registration's client secret where the app reads it: the Key Vault emulator.

    Written with the real SecretClient and the app's own credential (as an operator would with
    `az keyvault secret set`), so the local stack needs no special path in the app.
    """
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    tenant = _first_tenant(emulator.seed)
    app = emulator.seed["apps"]["bookingbridge"]
    credential = ClientSecretCredential(
        tenant["id"],
        app["clientId"],
        app["clientSecret"],
        authority=emulator.base_url,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_bundle),
    )
    client = SecretClient(
        emulator.key_vault_url,
        credential,
        verify_challenge_resource=False,
        connection_verify=str(emulator.ca_bundle),
    )
    with client:
        client.set_secret(CLIENT_SECRET_NAME, app["clientSecret"], content_type="client-secret")


def seed_demo_building(connection_string: str) -> None:
    """The demo building, unless it exists (a persistent `make run` keeps what was changed)."""
    from azure.data.tables import TableServiceClient

    from shared.directory.buildings import Buildings

    with TableServiceClient.from_connection_string(connection_string) as service:
        buildings = Buildings(service.create_table_if_not_exists)
        if buildings.find(DEMO_BUILDING) is None:
            buildings.put(DEMO_BUILDING, DEMO_BUILDING_BODY)


def endpoints_document(
    stack_settings: dict[str, str], emulator: Any, azurite: Azurite
) -> dict[str, Any]:
    """`.devstack/endpoints.json`: the keys are fixed by DEVSTACK.md."""
    seed = emulator.seed
    tenant = seed["tenant"]
    app = seed["apps"]["bookingbridge"]
    portal = seed["apps"]["portal"]
    base = stack_settings["BB_PUBLIC_BASE_URL"]
    return {
        "functionsBaseUrl": base,
        "emulatorBaseUrl": emulator.base_url,
        "authorityHost": emulator.base_url,
        "graphBaseUrl": emulator.base_url + "/v1.0",
        "keyVaultUrl": emulator.key_vault_url,
        "caBundle": str(emulator.ca_bundle),
        "tenantId": tenant["id"],
        "tenantDomain": tenant["domain"],
        "app": {"clientId": app["clientId"], "clientSecret": app["clientSecret"]},
        "portal": {
            "clientId": portal["clientId"],
            "clientSecret": portal["clientSecret"],
            "scope": stack_settings["BB_API_AUDIENCE"] + "/.default",
        },
        "admin": _admin(tenant),
        "buildingId": DEMO_BUILDING,
        "returnUrl": f"{base}/health?connected=demo",
        "storage": azurite.connection_string,
        "consoleUrl": f"{base}/console/",  # the admin console (sign in as `admin`)
    }


def _admin(tenant: dict[str, Any]) -> dict[str, Any]:
    admin = tenant["users"]["admin"]  # the demo scenario's building admin
    return {"username": admin.get("userPrincipalName"), "password": admin.get("password")}


def start_stack(
    state_dir: Path,
    *,
    functions_port: int = 0,
    persistent: bool = False,
    azurite_ports: tuple[int, int, int] | None = None,
    scenario: Path = DEMO_SCENARIO,
    extra_settings: dict[str, str] | None = None,
) -> Stack:
    """Start every piece (each waits until ready); on any failure, stop what already started."""
    from devstack.host import start_host_process
    from devstack.m365 import start_emulator

    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    tls = ensure_tls(state_dir / "tls")
    azurite = emulator = host = None
    try:
        azurite = start_azurite(
            location=state_dir / "azurite" if persistent else None,
            ports=azurite_ports,
            log_path=logs / "azurite.log",
        )
        # The local Functions host serves the Graph webhook over http on loopback; Graph (and the
        # emulator by default) wants https notification URLs, so the stack opts in explicitly.
        emulator = start_emulator(
            tls.ca_cert.parent,
            auto_consent=True,
            log_path=logs / "m365.log",
            env={"GRAPH_EMULATOR_ALLOW_HTTP_LOOPBACK": "1"},
        )
        port = functions_port or free_port()
        # Seeded after start so the app registration knows this stack's (random) callback URLs.
        base = f"http://127.0.0.1:{port}/api"
        emulator.seed = emulator.seed_scenario(
            json.loads(Path(scenario).read_text()),
            fresh=False,
            redirect_uris={
                "bookingbridge": [f"{base}/oauth/callback", f"{base}/oauth/adminconsent"]
            },
            # The admin console's sign-in (GET /api/console/) is a single-page app.
            spa_redirect_uris={"bookingbridge": [f"{base}/console/"]},
        )
        seed_app_secret(emulator)
        seed_demo_building(azurite.connection_string)
        settings = app_settings(azurite, emulator, f"http://127.0.0.1:{port}/api")
        settings.update(extra_settings or {})
        settings_file = state_dir / "local.settings.json"
        _write_private(settings_file, {"IsEncrypted": False, "Values": settings})
        host = start_host_process(
            "function_app:app",
            app_dir=REPO_ROOT,
            settings=settings_file,
            keys_file=state_dir / "host-keys.json",
            workdir=state_dir / "host",
            port=port,
            log_path=logs / "functions.log",
        )
        endpoints = endpoints_document(settings, emulator, azurite)
        _write_private(state_dir / "endpoints.json", endpoints)
        return Stack(state_dir, azurite, emulator, host, settings, endpoints)
    except BaseException:
        for piece in (host, emulator, azurite):
            if piece is not None:
                piece.stop()
        raise


def _write_private(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)  # local credentials
