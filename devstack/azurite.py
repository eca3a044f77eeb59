"""Start Azurite (pinned 3.35.0 from npm) as child processes on free or given ports.

`--disableTelemetry` makes it stop in milliseconds instead of 15-20 s; `--skipApiVersionCheck` lets
the current azure-storage-* clients through (MACHINE.md). The PIDs we hold are node's own (not an
npx wrapper), so stopping them really stops them.

One process per service (azurite-blob, azurite-queue, azurite-table), and the queue service on disk
even when the rest is in memory. Azurite's in-memory queue stores each message in an extent of its
own, and its garbage collector, every 60 s, deletes the extents of the messages gone since at a
cost that grows with the square of their number: after 6,000 messages the queue service froze
for 54 s (all three services with it: one Node loop), where the same run on disk, whose extents
are shared files, never waited more than 10 ms (DESIGN.md, issue 17). Separate processes also
let table and queue work use both cores, as Azure's storage services never share one loop.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.procs import REPO_ROOT, Child, free_port, start_child

BIN = REPO_ROOT / "node_modules" / ".bin"
AZURITE = BIN / "azurite"
# Azurite's well-known development account; it is public and only valid against Azurite.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = ("blob", "queue", "table")


@dataclass
class Azurite:
    children: tuple[Child, ...]  # blob, queue, table
    blob_port: int
    queue_port: int
    table_port: int
    scratch: Path | None = None  # the in-memory stack's queue files, removed on stop

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )

    def running(self) -> bool:
        return all(child.process.poll() is None for child in self.children)

    def stop(self) -> None:
        # SIGINT: azurite-table saves its database on SIGINT only (SIGTERM ends it unsaved and
        # `make run` would lose the last seconds of tables); the others take either.
        for child in self.children:
            child.stop(sig=signal.SIGINT)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def start_azurite(
    *,
    location: Path | None = None,
    ports: tuple[int, int, int] | None = None,
    log_path: Path | None = None,
) -> Azurite:
    """Start Azurite; blobs and tables in memory unless `location` is given (then all data
    survives restarts), queues on disk always (module docstring)."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make does this for you)")
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    scratch = None
    if location is None:
        scratch = Path(tempfile.mkdtemp(prefix="azurite-queue-"))
    else:
        location.mkdir(parents=True, exist_ok=True)

    def start(service: str, port: int) -> Child:
        argv = [
            str(BIN / f"azurite-{service}"),
            "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
            f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port),
        ]  # fmt: skip
        if location is not None:
            argv += ["--location", str(location)]
        elif service == "queue":
            argv += ["--location", str(scratch)]
        else:
            argv.append("--inMemoryPersistence")
        log = (
            log_path.with_name(f"{log_path.stem}-{service}{log_path.suffix}") if log_path else None
        )
        return start_child(f"azurite-{service}", argv, ready_port=port, log_path=log)

    # At once: each takes about a second to listen.
    with ThreadPoolExecutor(len(SERVICES)) as pool:
        futures = [
            pool.submit(start, s, p) for s, p in zip(SERVICES, (blob, queue, table), strict=True)
        ]
    started = [f.result() for f in futures if f.exception() is None]
    failed = next((f.exception() for f in futures if f.exception() is not None), None)
    azurite = Azurite(tuple(started), blob, queue, table, scratch)
    if failed is not None:
        azurite.stop()
        raise failed
    return azurite
