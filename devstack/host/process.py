"""Start the host as a child process and stop it: for test fixtures and `make run`.

    with start_host_process("function_app:app", app_dir=REPO_ROOT, settings={...}) as host:
        httpx.get(f"{host.base_url}/health", params={"code": host.function_key})

The child runs `python -m devstack.host` in this interpreter's environment, picks a free port
(port=0), and reports readiness through a ready file (devstack.procs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.host.config import HostKeys
from devstack.procs import REPO_ROOT, Child, python, start_child


@dataclass
class HostProcess:
    child: Child
    base_url: str
    keys: HostKeys
    workdir: Path
    _remove_workdir: bool = False

    @property
    def pid(self) -> int:
        return self.child.process.pid

    @property
    def master_key(self) -> str:
        return self.keys.master_key

    @property
    def function_key(self) -> str:
        return self.keys.function_keys["default"]

    @property
    def returncode(self) -> int | None:
        return self.child.process.poll()

    def log_tail(self, lines: int = 60) -> str:
        return self.child.log_tail(lines)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait for a graceful stop (SIGKILL after `timeout`); returns the exit status."""
        self.child.stop(timeout)
        if self._remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.child.process.returncode

    def __enter__(self) -> HostProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_host_process(
    app: str = "function_app:app",
    *,
    app_dir: Path = REPO_ROOT,
    settings: Mapping[str, str] | Path | None = None,
    env: Mapping[str, str] | None = None,
    keys_file: Path | None = None,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_grace: float = 5.0,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> HostProcess:
    """Start a host for `app` and wait until it serves.

    `settings` is a dict of app settings (written as a local.settings.json) or such a file;
    `env` is added to the child's environment (it wins over `settings`). The ready file and,
    unless given, the log (`host.log`) and keys file live in `workdir` (a temporary directory,
    removed by `stop()`, when not given). On a failed start the error carries the log's tail.
    """
    remove = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="devstack-host-")) if workdir is None else workdir
    workdir.mkdir(parents=True, exist_ok=True)
    keys_file = keys_file or workdir / "host-keys.json"
    argv = [
        python(), "-m", "devstack.host",
        "--app", app,
        "--app-dir", str(app_dir),
        "--host", host,
        "--port", str(port),
        "--keys", str(keys_file),
        "--ready-file", str(workdir / "host-ready.json"),
        "--shutdown-grace", str(shutdown_grace),
    ]  # fmt: skip
    if isinstance(settings, Path):
        argv += ["--settings", str(settings)]
    elif settings is not None:
        settings_file = workdir / "local.settings.json"
        settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": dict(settings)}))
        argv += ["--settings", str(settings_file)]
    argv += list(extra_args)
    child = start_child(
        "functions-host",
        argv,
        ready_file=workdir / "host-ready.json",
        log_path=log_path or workdir / "host.log",
        env=dict(env or {}),
        cwd=REPO_ROOT,
        timeout=timeout,
    )
    return HostProcess(
        child=child,
        base_url=str(child.info["baseUrl"]),
        keys=HostKeys.load_or_create(keys_file),
        workdir=workdir,
        _remove_workdir=remove,
    )
