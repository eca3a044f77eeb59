"""`python -m devstack.host --app function_app:app --port 7071`: run a Functions app locally.

Options (all optional):
  --app MODULE:ATTR   the FunctionApp to run (default function_app:app)
  --app-dir DIR       the app's directory: put first on sys.path, holds host.json (default .)
  --host, --port      where to listen (default 127.0.0.1:7071; port 0 picks a free port)
  --settings FILE     local.settings.json-shaped file; its Values become environment variables
                      before the app is imported (variables already set win, as with func start)
  --keys FILE         host keys; created with random keys (mode 0600) when missing
                      (default .devstack/host-keys.json)
  --ready-file FILE   written once serving: {"baseUrl": "http://127.0.0.1:<port>/api", "pid": n}
  --shutdown-grace S  seconds in-flight invocations get on SIGINT/SIGTERM (default 5)
  --log-level LEVEL   root log level (default INFO)

Exit status: 0 after a clean stop (signal), 1 when the app cannot be loaded or indexed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from devstack.host.config import HostConfigError, HostKeys, apply_settings, load_settings_file
from devstack.host.invoker import InvocationLogFilter

logger = logging.getLogger("devstack.host")


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(InvocationLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s%(invocation)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDKs log every HTTP request at INFO; the queue listener polls several times a second.
    logging.getLogger("azure").setLevel(logging.WARNING)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.host", description="Run an Azure Functions Python app locally."
    )
    parser.add_argument("--app", default="function_app:app")
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path)
    parser.add_argument("--keys", type=Path, default=Path(".devstack/host-keys.json"))
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--shutdown-grace", type=float, default=5.0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _configure_logging(args.log_level)
    try:
        if args.settings is not None:
            skipped = apply_settings(load_settings_file(args.settings), os.environ)
            for name in skipped:
                # Warned, not silent: an inherited variable shadowing the file surprises people.
                logger.warning(
                    "Skipping '%s' from %s: already set in the environment", name, args.settings
                )
        keys = HostKeys.load_or_create(args.keys)
        # Imported only now: the app (and what it imports) must see the settings in os.environ.
        from devstack.host.functions import load_app
        from devstack.host.server import FunctionsHost

        app = load_app(args.app, args.app_dir)
        host = FunctionsHost(
            app,
            app_dir=args.app_dir,
            keys=keys,
            host=args.host,
            port=args.port,
            ready_file=args.ready_file,
            shutdown_grace=args.shutdown_grace,
        )
    except HostConfigError as exc:
        logger.error("%s", exc)
        return 1
    except Exception:
        logger.exception("Cannot load %s", args.app)  # an import error in the app, typically
        return 1
    asyncio.run(host.serve())
    logger.info("Functions host stopped")
    if not host.finished_cleanly:
        # Non-daemon pool threads would keep the interpreter alive until they end; the grace
        # period is over, so leave now.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
