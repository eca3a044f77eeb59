"""Start Azurite (pinned 3.35.0 from npm) as a child process on free or given ports.

`--disableTelemetry` makes it stop in milliseconds instead of 15-20 s; `--skipApiVersionCheck` lets
the current azure-storage-* clients through (MACHINE.md). The PID we hold is node's own (not an npx
wrapper), so stopping it really stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devstack.procs import REPO_ROOT, Child, free_port, start_child, wait_for_port

AZURITE = REPO_ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account; it is public and only valid against Azurite.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class Azurite:
    child: Child
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        self.child.stop()


def start_azurite(
    *,
    location: Path | None = None,
    ports: tuple[int, int, int] | None = None,
    log_path: Path | None = None,
) -> Azurite:
    """Start Azurite; in memory unless `location` is given (then data survives restarts)."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make does this for you)")
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    argv = [
        str(AZURITE),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--blobHost", "127.0.0.1", "--blobPort", str(blob),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue),
        "--tableHost", "127.0.0.1", "--tablePort", str(table),
    ]  # fmt: skip
    if location is None:
        argv.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(location)]
    child = start_child("azurite", argv, ready_port=table, log_path=log_path)
    for port in (blob, queue):
        wait_for_port(port)
    return Azurite(child=child, blob_port=blob, queue_port=queue, table_port=table)
