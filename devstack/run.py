"""`make run`: the whole product on one machine, in the foreground, with a demo tenant and building.

Starts Azurite (data kept under .devstack/azurite), the Microsoft 365 emulator (Entra ID + Graph on
one HTTPS port, Key Vault on another, seeded with devstack/scenarios/demo.json) and the Functions
host on 127.0.0.1:7071 running the unmodified function_app; writes `.devstack/endpoints.json` (keys
fixed by DEVSTACK.md); prints where everything is; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import signal
import socket
import sys
import time

from devstack.procs import REPO_ROOT
from devstack.stack import Stack, start_stack

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


def main() -> int:
    # Ctrl-C must stop the stack even when we were started with SIGINT ignored (a background job of
    # a non-interactive shell inherits that, and Python then installs no KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not _all_free((FUNCTIONS_PORT,)):
        print(f"port {FUNCTIONS_PORT} is in use: is another `make run` running?", file=sys.stderr)
        return 1
    started = time.monotonic()
    stack: Stack = start_stack(
        STATE,
        functions_port=FUNCTIONS_PORT,
        persistent=True,
        azurite_ports=AZURITE_PORTS if _all_free(AZURITE_PORTS) else None,
    )
    # SIGTERM (e.g. from a supervisor) stops the stack like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(_banner(stack, time.monotonic() - started), flush=True)
        while all(
            child.process.poll() is None
            for child in (stack.azurite.child, stack.emulator.child, stack.host.child)
        ):
            time.sleep(0.5)
        print("a local stack process exited; stopping the rest (logs in .devstack/logs/)")
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
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
  Endpoints, demo credentials: {STATE / "endpoints.json"}
  Logs: {STATE / "logs"}/

Try:  open {e["consoleUrl"]} in a browser (the emulator's certificate is from the local CA:
      trust {e["caBundle"]} or accept the browser's warning once)
      curl -s {base}/health
      make demo        (in another terminal)
"""


if __name__ == "__main__":
    raise SystemExit(main())
