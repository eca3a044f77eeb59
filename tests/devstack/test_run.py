"""`make run` (devstack/run.py) stops everything when only its own PID is signalled (issue 22).

A supervisor or an IDE's stop button signals the one process it started, not its process group.
`python -m devstack.run` runs here as that process would (own state directory, free ports); the
test records every descendant (Azurite, the Microsoft 365 emulator, the Functions host and its
workers), signals the python PID alone and checks that each of them is gone and its port free.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack.procs import REPO_ROOT
from devstack.tls import trust_command
from tests.waiting import wait_for


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every live process (from /proc; zombies left out)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            tree.setdefault(int(ppid), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ports(endpoints: dict[str, object]) -> set[int]:
    ports = {
        urlsplit(str(endpoints[key])).port
        for key in ("functionsBaseUrl", "emulatorBaseUrl", "keyVaultUrl")
    }
    for part in str(endpoints["storage"]).split(";"):
        if part.endswith("Endpoint") or "Endpoint=" in part:
            ports.add(urlsplit(part.split("=", 1)[1]).port)
    return {p for p in ports if p}


# A stand-in for GNU make: runs the command as its child and, sent SIGINT alone, exits without
# passing it on (as make does); SIGTERM it passes on (as make does).
_MAKE = """
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(child.wait())))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
sys.exit(child.wait())
"""


@pytest.mark.parametrize(
    ("signum", "via_make"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-to-make"],
)
def test_signalling_only_the_run_pid_stops_every_child(
    signum: signal.Signals, via_make: bool, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    log = (tmp_path / "run.log").open("wb")
    argv = [
        sys.executable,
        "-m",
        "devstack.run",
        "--state-dir",
        str(state),
        "--functions-port",
        "0",
    ]
    # Not a new session, and SIGINT not ignored: exactly what a supervisor or IDE starts.
    started = subprocess.Popen(
        [sys.executable, "-c", _MAKE, *argv] if via_make else argv,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    children: set[int] = set()
    try:
        wait_for(
            lambda: started.poll() is not None or b"BookingBridge is running" in _read(tmp_path),
            timeout=120,
            what="make run's banner",
        )
        assert started.poll() is None, _read(tmp_path).decode(errors="replace")
        endpoints = json.loads((state / "endpoints.json").read_text())
        # The banner gives the one command that trusts the local CA (README.md, Console).
        assert trust_command(Path(endpoints["caBundle"])).encode() in _read(tmp_path)
        ports = _ports(endpoints)
        assert len(ports) >= 4, ports  # functions host, emulator, Key Vault, Azurite
        assert all(_listening(p) for p in ports)
        children = _descendants(started.pid)
        assert len(children) >= 3, children  # Azurite, the emulator, the host (and its workers)

        os.kill(started.pid, signum)  # this PID only, as a supervisor does
        started.wait(timeout=60)
        wait_for(lambda: not any(_alive(p) for p in children), timeout=30, what="no orphans")
    finally:
        if started.poll() is None:  # a failed assertion above: still stop the stack it started
            started.terminate()
            started.wait(timeout=60)
        for pid in children:  # and never leave an orphan behind, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    assert not [p for p in ports if _listening(p)], "ports still served after the stop"
    assert b"stopping" in _read(tmp_path)


def _read(tmp_path: Path) -> bytes:
    return (tmp_path / "run.log").read_bytes()
