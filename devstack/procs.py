"""Process helpers for the local stack: free ports, child processes that report readiness, clean stop.

Every piece of the local stack (Azurite, the Microsoft 365 emulator, the Functions host) is a child
process. Tests and `make run` start them the same way, so that what the tests exercise is what a
developer runs. A child reports readiness by writing a JSON "ready file" (its real ports, pid), which
avoids racing on "is the port open yet" and lets children pick free ports themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def tcp_server_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for a local server (uvicorn serves it), with Nagle off.

    IPPROTO_TCP is named rather than left 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    whose proto says TCP, and accepted connections inherit the option from here. With Nagle on, a
    response body written after its headers waited for the client's delayed ACK: 40 ms added to
    every call to our local Functions host and emulators.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


@dataclass
class Child:
    """A child process of the local stack; `stop()` ends it and everything it started."""

    name: str
    process: subprocess.Popen[bytes]
    info: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is not None:
            return
        # The child leads its own process group (start_new_session), so grandchildren die too.
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_child(
    name: str,
    argv: Sequence[str],
    *,
    ready_file: Path | None = None,
    ready_port: int | None = None,
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Child:
    """Start `argv` and wait until it is ready: it wrote `ready_file` (JSON) or listens on `ready_port`.

    Output goes to `log_path` (or is discarded) so a chatty child can never block on a full pipe.
    """
    if ready_file is not None and ready_file.exists():
        ready_file.unlink()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=str(cwd or REPO_ROOT),
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    child = Child(name=name, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode} before it was ready\n{child.log_tail()}"
                )
            if ready_file is not None and ready_file.exists():
                text = ready_file.read_text()
                if text.strip():
                    try:
                        child.info = json.loads(text)
                        return child
                    except json.JSONDecodeError:
                        pass  # half-written; the child writes atomically, but be patient anyway
            if ready_port is not None:
                try:
                    with socket.create_connection(("127.0.0.1", ready_port), timeout=0.2):
                        return child
                except OSError:
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready after {timeout:.0f} s\n{child.log_tail()}")
    except BaseException:
        child.stop()
        raise


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    """Write the ready file atomically (the parent polls for it)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def python() -> str:
    """The interpreter running us: children run in the same virtual environment."""
    return sys.executable
