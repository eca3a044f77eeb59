"""`python -m devstack.m365`: the Microsoft 365 emulator (identity + Graph, and Key Vault)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from devstack.m365.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.m365", description=__doc__)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="main port (0 = a free one)")
    parser.add_argument("--kv-port", type=int, default=0, help="Key Vault port (0 = a free one)")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--scenario", help="scenario file, or a name in devstack/scenarios")
    parser.add_argument(
        "--auto-consent",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with login_hint, /authorize signs the user in and consents without pages",
    )
    parser.add_argument(
        "--key-vault-tenant", help="tenant (id or domain) owning the vault; default: first seeded"
    )
    parser.add_argument(
        "--no-graph", action="store_true", help="identity and Key Vault only (no /v1.0)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(
        serve(
            tls_dir=args.tls_dir,
            port=args.port,
            kv_port=args.kv_port,
            host=args.host,
            ready_file=args.ready_file,
            scenario=args.scenario,
            auto_consent=args.auto_consent,
            key_vault_tenant=args.key_vault_tenant,
            log_level=args.log_level,
            with_graph=not args.no_graph,
        )
    )


if __name__ == "__main__":
    main()
