"""Bulk user import against Azurite: rows/s for a 10,000-user CSV (parse + validate + write), the
cost of rejecting a file with one bad row (validation only, nothing written), and paging the result.

Starts its own in-memory Azurite on free ports and stops it at the end.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.azurite import start_azurite
from shared.directory import companies, people, userimport
from shared.storage import clients

ROWS = 10_000
RUNS = 3


def _csv(rows: int, bad_row: int | None = None) -> bytes:
    lines = ["email,name,companyId"]
    for i in range(1, rows + 1):
        email = "not-an-address" if i == bad_row else f"user{i:05d}@contoso.com"
        lines.append(f'{email},"User {i}, Contoso",contoso')
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    azurite = start_azurite()
    try:
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "BB_KEY_VAULT_URL": "https://vault.invalid/",
                "BB_CLIENT_ID": "0a0a0a0a-0000-4000-8000-000000000002",
                "BB_PUBLIC_BASE_URL": "http://127.0.0.1:7071/api",
                "BB_API_AUDIENCE": "api://bookingbridge",
                "BB_API_TENANT_ID": "0a0a0a0a-0000-4000-8000-000000000001",
            }
        )
        clients.reset_clients()
        tables = clients.table
        good, bad = _csv(ROWS), _csv(ROWS, bad_row=ROWS // 2)

        imports, rejects, listings = [], [], []
        for run in range(RUNS):
            building = f"bench-{run}"
            companies.put_company(
                tables, building, "contoso", {"name": "C", "domains": ["contoso.com"]}
            )

            t0 = time.perf_counter()
            report = userimport.import_users(tables, building, userimport.parse_users_csv(bad))
            rejects.append(time.perf_counter() - t0)
            assert report.imported == 0 and len(report.rejected) == 1

            t0 = time.perf_counter()
            report = userimport.import_users(tables, building, userimport.parse_users_csv(good))
            imports.append(time.perf_counter() - t0)
            assert report.imported == ROWS

            t0 = time.perf_counter()
            seen, token = 0, None
            while True:
                page = people.list_users(tables, building, "1000", token)
                seen += len(page.value)
                token = page.continuation_token
                if token is None:
                    break
            listings.append(time.perf_counter() - t0)
            assert seen == ROWS

        imp = statistics.median(imports)
        print(
            f"import {ROWS} users (CSV → validated → 100 transactions): "
            f"median {imp:.2f} s = {ROWS / imp:,.0f} rows/s  (runs: "
            + ", ".join(f"{t:.2f}" for t in imports)
            + ")"
        )
        print(
            f"reject a {ROWS}-row file with one bad row (nothing written): "
            f"median {statistics.median(rejects) * 1000:.0f} ms"
        )
        print(f"list {ROWS} users in pages of 1000: median {statistics.median(listings):.2f} s")
    finally:
        clients.reset_clients()
        azurite.stop()


if __name__ == "__main__":
    main()
