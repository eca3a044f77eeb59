"""Bulk import of a building's registered users (`POST /users:import`, CSV or JSON).

Decisions: every row is validated first (address, name, company format and existence, duplicates
within the file after normalisation, unknown fields as PUT refuses them). Any bad row → 422
listing every bad row, nothing written. A CSV header naming a column other than email, name,
companyId (or one of them twice) is a 400 on `header`, like a missing column: the file's shape
is wrong, and a per-row report would repeat one mistake 20,000 times. A value under no column
(a blank header cell, or past the header's end) rejects its row, as `column <n>` (1-based).
Otherwise all rows are upserted (existing users updated, others untouched) in transactions of
100, in the building's one `users` partition. A storage failure part-way can leave earlier
transactions written; rows are idempotent upserts, so sending the same file again converges.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from azure.data.tables import UpdateMode

from shared.core.errors import FieldError, ValidationFailed
from shared.core.validate import Checker, check_building
from shared.directory.attribution import User
from shared.directory.companies import load_companies
from shared.directory.people import read_user, user_entity
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

IMPORT_MAX_ROWS = (
    20_000  # twice the 10,000 the issue asks for; imports are upserts, so split bigger files
)
IMPORT_COLUMNS = ("email", "name", "companyId")
_IMPORT_WORKERS = 8  # concurrent transactions; one partition, so no ordering between them matters


class RejectedRow(TypedDict):
    row: int
    error: str


@dataclass(frozen=True)
class ImportReport:
    imported: int
    rejected: list[RejectedRow]


def parse_users_csv(data: bytes) -> list[dict[str, str]]:
    """CSV (RFC 4180) with a header naming exactly email, name, companyId (any order, any case)
    → one dict per non-blank record. A malformed file is a 400 on `body`, a bad header on `header`.

    A non-blank cell under no column (a blank header cell, or past the header's end) is kept as
    `column <n>`, so `import_users` rejects the row like a JSON row with an unknown field; blank
    ones (a spreadsheet's trailing commas) are nothing.
    """
    try:
        text = data.decode("utf-8-sig")  # spreadsheet exports start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise ValidationFailed([FieldError("body", "must be UTF-8 text")]) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[dict[str, str]] = []
    columns: dict[str, int] | None = None
    known: set[int] = set()  # the positions of those columns
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            if columns is None:
                columns = _header(record)
                known = set(columns.values())
                continue
            row = {
                name: record[i].strip() if i < len(record) else "" for name, i in columns.items()
            }
            for i, cell in enumerate(record):
                if i not in known and cell.strip():
                    row[f"column {i + 1}"] = cell.strip()
            records.append(row)
    except csv.Error as exc:
        raise ValidationFailed(
            [FieldError("body", f"is not valid CSV (line {reader.line_num}): {exc}")]
        ) from exc
    if columns is None:
        raise ValidationFailed([FieldError("header", "is missing: email,name,companyId")])
    return records


def _header(record: list[str]) -> dict[str, int]:
    """Column positions of email, name, companyId; 400 on `header` for a missing, unknown or
    repeated column (blank header cells name no column and are skipped)."""
    wanted = {c.lower(): c for c in IMPORT_COLUMNS}
    columns: dict[str, int] = {}
    unknown: list[str] = []
    repeated: list[str] = []
    for i, cell in enumerate(record):
        label = cell.strip()
        if not label:
            continue
        name = wanted.get(label.lower())
        if name is None:
            unknown.append(label)
        elif name in columns:
            repeated.append(name)
        else:
            columns[name] = i
    problems: list[str] = []
    missing = [c for c in IMPORT_COLUMNS if c not in columns]
    if missing:
        problems.append(
            "must name the columns email, name, companyId; missing " + ", ".join(missing)
        )
    if unknown:
        problems.append(
            "names columns that are not imported (only email, name, companyId): " + _some(unknown)
        )
    if repeated:
        problems.append("names a column twice: " + _some(repeated))
    if problems:
        raise ValidationFailed([FieldError("header", "; ".join(problems))])
    return columns


def _some(labels: list[str], limit: int = 10, width: int = 40) -> str:
    """Header labels for a message: bounded, since they are whatever the file says."""
    shown = ", ".join(label[:width] for label in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def import_users(tables: TableSource, building_id: str, records: Sequence[Any]) -> ImportReport:
    """Validate every row, then write all or nothing (see the module docstring)."""
    check_building(building_id)
    if len(records) > IMPORT_MAX_ROWS:
        raise ValidationFailed([FieldError("body", f"at most {IMPORT_MAX_ROWS} users per import")])
    companies = {c.id for c in load_companies(tables, building_id)}
    users: list[User] = []
    rejected: list[RejectedRow] = []
    first_row: dict[str, int] = {}
    for row, record in enumerate(records, start=1):  # row 1 = the first user, in CSV and JSON
        if not isinstance(record, Mapping):
            rejected.append({"row": row, "error": "must be an object with email, name, companyId"})
            continue
        check = Checker(record)
        check.only(IMPORT_COLUMNS)  # as PUT /users/{email}: a stray field is a mistake, not noise
        user = read_user(check, record.get("email"))
        company_ok = not any(e.field == "companyId" for e in check.errors)
        if company_ok and user.company_id not in companies:
            check.add("companyId", f"names no company of this building: {user.company_id}")
        if user.email and user.email in first_row:
            check.add("email", f"duplicates row {first_row[user.email]}")
        elif user.email:
            first_row[user.email] = row
        if check.errors:
            error = "; ".join(f"{e.field}: {e.message}" for e in check.errors)
            rejected.append({"row": row, "error": error})
        else:
            users.append(user)
    if rejected:
        return ImportReport(0, rejected)
    operations: list[tablestore.Operation] = [
        ("upsert", user_entity(building_id, u), {"mode": UpdateMode.REPLACE}) for u in users
    ]
    written = tablestore.submit_in_chunks(
        tables(tablestore.USERS), operations, workers=_IMPORT_WORKERS
    )
    return ImportReport(written, [])
