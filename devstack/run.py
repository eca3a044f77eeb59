"""`make run`: the whole product on one machine, in the foreground, with a demo tenant and building.

Starts Azurite (data kept under .devstack/azurite), the Microsoft 365 emulator (Entra ID + Graph on
one HTTPS port, Key Vault on another, seeded with devstack/scenarios/demo.json) and the Functions
host on 127.0.0.1:7071 running the unmodified function_app; writes `.devstack/endpoints.json` (keys
fixed by DEVSTACK.md); prints where everything is; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from devstack.procs import REPO_ROOT
from devstack.stack import Stack, start_stack
from devstack.tls import trust_command

STATE = REPO_ROOT / ".devstack"
FUNCTIONS_PORT = 7071
# Azurite's usual ports where free, so the usual connection strings and tools keep working.
AZURITE_PORTS = (10000, 10001, 10002)


def _all_free(ports: tuple[int, ...]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _stop_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=STATE, help="default: .devstack/")
    parser.add_argument(
        "--functions-port", type=int, default=FUNCTIONS_PORT,
        help=f"default {FUNCTIONS_PORT}; 0: any free port (and Azurite on free ports too)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # Every child leads its own process group (devstack/procs.py), so a signal to this PID alone
    # (a supervisor, an IDE's stop button, `kill <pid>`) reaches none of them: whichever of SIGINT,
    # SIGTERM or SIGHUP arrives, and whenever (during start-up too), it becomes KeyboardInterrupt
    # here and `stack.stop()` ends each child's whole group. Installed before anything starts; also
    # when we were started with SIGINT ignored (a background job of a non-interactive shell).
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _stop_signal)
    port = args.functions_port
    if port and not _all_free((port,)):
        print(f"port {port} is in use: is another `make run` running?", file=sys.stderr)
        return 1
    started = time.monotonic()
    parent = os.getppid()
    try:
        stack: Stack = start_stack(
            args.state_dir,
            functions_port=port,
            persistent=True,
            azurite_ports=AZURITE_PORTS if port and _all_free(AZURITE_PORTS) else None,
        )
    except KeyboardInterrupt:  # start_stack has stopped what it had started
        print("\nstopped while starting", flush=True)
        return 0
    try:
        print(_banner(stack, time.monotonic() - started), flush=True)
        while all(
            child.process.poll() is None
            for child in (*stack.azurite.children, stack.emulator.child, stack.host.child)
        ):
            if os.getppid() != parent:
                # Our parent died without telling us: GNU make, sent SIGINT alone (not from a
                # terminal, which signals the whole group), exits without passing it on.
                print("the process that started `make run` is gone; stopping", flush=True)
                return 0
            time.sleep(0.5)
        print(f"a local stack process exited; stopping the rest (logs in {stack.state_dir}/logs/)")
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        # A second signal (an impatient Ctrl-C, a supervisor repeating SIGTERM) must not cut the
        # stop short and orphan the children; each piece's stop is bounded (devstack/procs.py).
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, signal.SIG_IGN)
        stack.stop()


def _banner(stack: Stack, seconds: float) -> str:
    e = stack.endpoints
    base = e["functionsBaseUrl"]
    admin = e["admin"]  # the demo building's admin: the console's sign-in
    return f"""
BookingBridge is running (ready in {seconds:.1f} s). Ctrl-C stops everything.

  Admin console      {e["consoleUrl"]}
                     sign in as {admin["username"]} / {admin["password"]}
  Functions host     {base}   (health: {base}/health, API: {base}/openapi.json)
  Entra ID + Graph   {e["emulatorBaseUrl"]}   (Graph: {e["graphBaseUrl"]})
  Key Vault          {e["keyVaultUrl"]}
  Demo tenant        {e["tenantDomain"]} ({e["tenantId"]}), admin {e["admin"]["username"]}
  Demo building      {e["buildingId"]}
  Endpoints, demo credentials: {stack.state_dir / "endpoints.json"}
  Logs: {stack.state_dir / "logs"}/

Try:  open {e["consoleUrl"]} in a browser (the emulator's certificate is from the local CA;
      accept the browser's warning, or trust the CA once (README.md, Console):
        {trust_command(Path(e["caBundle"]))})
      curl -s {base}/health
      make demo        (in another terminal)
"""


if __name__ == "__main__":
    raise SystemExit(main())
