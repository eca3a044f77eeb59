"""Microsoft 365 emulator: Entra ID (identity), Microsoft Graph and Key Vault, over local HTTPS.

`start_emulator()` runs it as a child process (what tests and `make run` use) and returns a
handle with its URLs, CA bundle, seed result and an httpx client on the control API.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.procs import Child, python, start_child


@dataclass
class RunningEmulator:
    base_url: str
    key_vault_url: str
    ca_bundle: str
    seed: dict[str, Any]
    control: httpx.Client
    child: Child
    pid: int
    _tmp: Any = field(default=None, repr=False)

    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    def seed_scenario(
        self,
        scenario: dict[str, Any] | str = "demo",
        *,
        fresh: bool = True,
        redirect_uris: dict[str, list[str]] | None = None,
        spa_redirect_uris: dict[str, list[str]] | None = None,
    ) -> dict[str, Any]:
        """Seed more tenants (by default with fresh ids, so the demo can be seeded per test).

        `redirect_uris` / `spa_redirect_uris` replace an app's web / SPA redirect URIs by app key.
        """
        body: dict[str, Any] = {"scenario": scenario, "fresh": fresh}
        if redirect_uris:
            body["redirectUris"] = redirect_uris
        if spa_redirect_uris:
            body["spaRedirectUris"] = spa_redirect_uris
        response = self.control.post("seed", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        response = self.control.post("clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def stop(self) -> None:
        self.control.close()
        self.child.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_emulator(
    tls_dir: Path | str,
    scenario: str | Path | None = None,
    auto_consent: bool = True,
    log_path: Path | str | None = None,
    *,
    port: int = 0,
    kv_port: int = 0,
    key_vault_tenant: str | None = None,
    ready_file: Path | str | None = None,
    timeout: float = 60.0,
    graph: bool = True,
    env: dict[str, str] | None = None,
) -> RunningEmulator:
    """Start `python -m devstack.m365` and wait until it is ready (it wrote its ready file).

    `env` adds environment variables for the child, e.g. the Graph emulator's `GRAPH_EMULATOR_*`
    knobs (devstack/m365/graph/config.py).
    """
    tmp = None
    if ready_file is None:
        tmp = tempfile.TemporaryDirectory(prefix="m365-")
        ready_file = Path(tmp.name) / "ready.json"
    argv = [
        python(),
        "-m",
        "devstack.m365",
        "--tls-dir",
        str(Path(tls_dir).resolve()),
        "--port",
        str(port),
        "--kv-port",
        str(kv_port),
        "--ready-file",
        str(ready_file),
        "--auto-consent" if auto_consent else "--no-auto-consent",
    ]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    if key_vault_tenant:
        argv += ["--key-vault-tenant", key_vault_tenant]
    if not graph:
        argv.append("--no-graph")
    child = start_child(
        "m365-emulator",
        argv,
        ready_file=Path(ready_file),
        log_path=Path(log_path) if log_path else None,
        env=env,
        timeout=timeout,
    )
    info = child.info
    control = httpx.Client(
        base_url=f"{info['baseUrl']}/_emulator/",
        verify=ssl.create_default_context(cafile=info["caBundle"]),
        trust_env=False,  # this machine's REQUESTS_CA_BUNDLE/proxies must not apply to loopback
        timeout=30.0,
    )
    return RunningEmulator(
        base_url=info["baseUrl"],
        key_vault_url=info["keyVaultUrl"],
        ca_bundle=info["caBundle"],
        seed=info.get("seed") or {},
        control=control,
        child=child,
        pid=int(info["pid"]),
        _tmp=tmp,
    )
