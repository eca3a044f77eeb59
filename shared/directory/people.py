"""Companies, registered users and building settings: what attribution (`shared.directory.attribution`) reads.

Storage (docs/DESIGN.md): `companies` (building, companyId) with `name` and `domains` (a JSON list);
`users` (building, escaped normalised email) with `name` and `companyId`; `settings` (building,
`settings`). One building = one partition per table, so a bulk import is a run of entity group
transactions in a single partition.

Decisions:
- A user's `companyId` must name a company of the building: 422 `unknown_company` (the body is
  well-formed, the reference is not); in an import it is a rejected row.
- A company still referenced by a user cannot be deleted: 409 `company_in_use`. The default user
  cannot be deleted: 409 `user_is_default`. (Checks, not storage invariants: a user written
  concurrently with the company's deletion can still reference it; attribution then reports the
  user with that company id.)
- `defaultUserEmail` must be a registered user of the building (HqO's "preconfigured default
  user"): 422 `unknown_user`. null means no default: ambiguous domains stay unattributed.
- Bulk import validates every row first (address, name, company format and existence, duplicates
  within the file after normalisation, unknown fields as PUT refuses them). Any bad row → 422
  listing every bad row, nothing written. A CSV header naming a column other than email, name,
  companyId (or one of them twice) is a 400 on `header`, like a missing column: the file's shape
  is wrong, and a per-row report would repeat one mistake 20,000 times. A value under no column
  (a blank header cell, or past the header's end) rejects its row, as `column <n>` (1-based).
  Otherwise all rows are upserted (existing users updated, others untouched) in transactions of
  100. A storage failure part-way can leave earlier transactions written; rows are idempotent
  upserts, so sending the same file again converges.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from azure.data.tables import UpdateMode

from shared.core.addresses import normalise_domain, normalise_email
from shared.core.errors import Conflict, FieldError, NotFound, Unprocessable, ValidationFailed
from shared.core.validate import Checker, check_building, check_path
from shared.directory.attribution import Attribution, Company, User, attribute
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

SETTINGS_ROW_KEY = "settings"
DOMAINS_MAX = 50
TOP_DEFAULT = 100
TOP_MAX = 1000
IMPORT_MAX_ROWS = (
    20_000  # twice the 10,000 the issue asks for; imports are upserts, so split bigger files
)
IMPORT_COLUMNS = ("email", "name", "companyId")
_IMPORT_WORKERS = 8  # concurrent transactions; one partition, so no ordering between them matters


class CompanyOut(TypedDict):
    id: str
    name: str
    domains: list[str]


class UserOut(TypedDict):
    email: str
    name: str
    companyId: str


class UsersPageOut(TypedDict):
    value: list[UserOut]
    continuationToken: str | None


class SettingsOut(TypedDict):
    defaultUserEmail: str | None
    storeExternalSubjects: bool


class RejectedRow(TypedDict):
    row: int
    error: str


@dataclass(frozen=True)
class ImportReport:
    imported: int
    rejected: list[RejectedRow]


@dataclass(frozen=True)
class BuildingSettings:
    default_user_email: str | None = None
    store_external_subjects: bool = False  # subjects of Outlook bookings are not stored by default


# --- companies --------------------------------------------------------------------------------


def company_view(company: Company) -> CompanyOut:
    return {"id": company.id, "name": company.name, "domains": list(company.domains)}


def _company_from_entity(entity: Mapping[str, Any]) -> Company:
    domains = tablestore.from_json_property(entity.get("domains"), [])
    return Company(str(entity["RowKey"]), str(entity.get("name", "")), tuple(domains))


def parse_company(company_id: str, body: Mapping[str, Any]) -> Company:
    """A company from a PUT body, or 400 naming every bad field (each bad domain by index)."""
    check = Checker(body)
    check.path_id("companyId", company_id)
    check.only(("name", "domains"), ("id",))
    name = check.name()
    raw = body.get("domains")
    domains: list[str] = []
    if not isinstance(raw, list) or not raw or len(raw) > DOMAINS_MAX:
        check.add("domains", f"must be a list of 1–{DOMAINS_MAX} domain names")
        raw = []
    for i, value in enumerate(raw):
        domain = normalise_domain(value) if isinstance(value, str) else None
        if domain is None:
            check.add(f"domains[{i}]", "must be a domain name such as contoso.com")
        elif domain in domains:
            check.add(f"domains[{i}]", f"duplicates {domain}")
        else:
            domains.append(domain)
    check.done()
    return Company(company_id, name, tuple(domains))


def put_company(
    tables: TableSource, building_id: str, company_id: str, body: Mapping[str, Any]
) -> tuple[CompanyOut, bool]:
    check_building(building_id)
    company = parse_company(company_id, body)
    created = tablestore.put_entity(
        tables(tablestore.COMPANIES),
        {
            "PartitionKey": building_id,
            "RowKey": company.id,
            "name": company.name,
            "domains": tablestore.json_property(list(company.domains)),
            "updatedAt": tablestore.utc_now(),
        },
    )
    return company_view(company), created


def load_companies(tables: TableSource, building_id: str) -> list[Company]:
    """Every company of the building (one partition query; attribution needs them all)."""
    entities = tablestore.query_all(
        tables(tablestore.COMPANIES), "PartitionKey eq @b", {"b": building_id}
    )
    return [_company_from_entity(e) for e in entities]


def list_companies(tables: TableSource, building_id: str) -> list[CompanyOut]:
    check_building(building_id)
    return [company_view(c) for c in load_companies(tables, building_id)]


def delete_company(tables: TableSource, building_id: str, company_id: str) -> None:
    """204 whether or not it existed; 409 `company_in_use` while a user references it."""
    check_path(building=building_id, companyId=company_id)
    in_use = tablestore.query_first(
        tables(tablestore.USERS),
        "PartitionKey eq @b and companyId eq @c",
        {"b": building_id, "c": company_id},
    )
    if in_use is not None:
        raise Conflict(
            "Registered users belong to this company; move or delete them first",
            reason="company_in_use",
        )
    with tablestore.storage_errors("delete company"):
        tables(tablestore.COMPANIES).delete_entity(building_id, company_id)


# --- users ------------------------------------------------------------------------------------


def user_view(user: User) -> UserOut:
    return {"email": user.email, "name": user.name, "companyId": user.company_id}


def _user_from_entity(entity: Mapping[str, Any]) -> User:
    return User(
        email=tablestore.unescape_key(str(entity["RowKey"])),
        name=str(entity.get("name", "")),
        company_id=str(entity.get("companyId", "")),
    )


def _user_entity(building_id: str, user: User) -> dict[str, Any]:
    return {
        "PartitionKey": building_id,
        "RowKey": tablestore.escape_key(user.email),
        "name": user.name,
        "companyId": user.company_id,
        "updatedAt": tablestore.utc_now(),
    }


def _read_user(check: Checker, email: Any) -> User:
    """The user fields every writer validates the same way (PUT body + path, an import row)."""
    address = check.email("email", email) or ""
    name = check.name()
    company_id = check.body.get("companyId")
    if company_id is None or company_id == "":
        check.add("companyId", "is required")
    elif not isinstance(company_id, str):
        check.add("companyId", "must be a string")
    else:
        check.path_id("companyId", company_id)
    return User(address, name, company_id if isinstance(company_id, str) else "")


def load_user(tables: TableSource, building_id: str, email: str) -> User | None:
    """A registered user by normalised address (a point read)."""
    entity = tablestore.get_entity(
        tables(tablestore.USERS), building_id, tablestore.escape_key(email)
    )
    return _user_from_entity(entity) if entity is not None else None


def _path_email(raw: str) -> str:
    check = Checker()
    address = check.email("email", raw)
    check.done()
    assert address is not None
    return address


def put_user(
    tables: TableSource, building_id: str, email: str, body: Mapping[str, Any]
) -> tuple[UserOut, bool]:
    check_building(building_id)
    check = Checker(body)
    check.only(("name", "companyId"), ("email",))
    user = _read_user(check, email)
    check.done()
    company = tablestore.get_entity(tables(tablestore.COMPANIES), building_id, user.company_id)
    if company is None:
        raise Unprocessable("companyId names no company of this building", reason="unknown_company")
    created = tablestore.put_entity(tables(tablestore.USERS), _user_entity(building_id, user))
    return user_view(user), created


def get_user(tables: TableSource, building_id: str, email: str) -> UserOut:
    check_building(building_id)
    user = load_user(tables, building_id, _path_email(email))
    if user is None:
        raise NotFound("No such registered user in this building", reason="user_not_found")
    return user_view(user)


def delete_user(tables: TableSource, building_id: str, email: str) -> None:
    """204 whether or not it existed; 409 `user_is_default` for the building's default user."""
    check_building(building_id)
    address = _path_email(email)
    if load_building_settings(tables, building_id).default_user_email == address:
        raise Conflict(
            "This user is the building's default user; change the settings first",
            reason="user_is_default",
        )
    with tablestore.storage_errors("delete user"):
        tables(tablestore.USERS).delete_entity(building_id, tablestore.escape_key(address))


def parse_top(raw: str | None) -> int:
    if raw is None or raw == "":
        return TOP_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= TOP_MAX:
        raise ValidationFailed([FieldError("top", f"must be an integer from 1 to {TOP_MAX}")])
    return int(raw)


def list_users(
    tables: TableSource, building_id: str, top: str | None, continuation_token: str | None
) -> UsersPageOut:
    """One page of users ordered by (escaped) address; follow `continuationToken` until null."""
    check_building(building_id)
    page = tablestore.query_page(
        tables(tablestore.USERS),
        "PartitionKey eq @b",
        {"b": building_id},
        top=parse_top(top),
        continuation_token=continuation_token,
        select=["RowKey", "name", "companyId"],
    )
    return {
        "value": [user_view(_user_from_entity(e)) for e in page.items],
        "continuationToken": page.continuation_token,
    }


# --- bulk import ------------------------------------------------------------------------------


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
        user = _read_user(check, record.get("email"))
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
        ("upsert", _user_entity(building_id, u), {"mode": UpdateMode.REPLACE}) for u in users
    ]
    written = tablestore.submit_in_chunks(
        tables(tablestore.USERS), operations, workers=_IMPORT_WORKERS
    )
    return ImportReport(written, [])


# --- settings ---------------------------------------------------------------------------------


def settings_view(settings: BuildingSettings) -> SettingsOut:
    return {
        "defaultUserEmail": settings.default_user_email,
        "storeExternalSubjects": settings.store_external_subjects,
    }


def load_building_settings(tables: TableSource, building_id: str) -> BuildingSettings:
    """The building's settings, defaults where never set."""
    entity = tablestore.get_entity(tables(tablestore.SETTINGS), building_id, SETTINGS_ROW_KEY)
    if entity is None:
        return BuildingSettings()
    return BuildingSettings(
        default_user_email=entity.get("defaultUserEmail") or None,
        store_external_subjects=bool(entity.get("storeExternalSubjects", False)),
    )


def get_building_settings(tables: TableSource, building_id: str) -> SettingsOut:
    check_building(building_id)
    return settings_view(load_building_settings(tables, building_id))


def put_building_settings(
    tables: TableSource, building_id: str, body: Mapping[str, Any]
) -> SettingsOut:
    """Replace the settings: omitted fields take their defaults, unknown fields are refused."""
    check_building(building_id)
    check = Checker(body)
    check.only(("defaultUserEmail", "storeExternalSubjects"))
    default_user = check.email("defaultUserEmail", body.get("defaultUserEmail"), nullable=True)
    settings = BuildingSettings(
        default_user_email=default_user,
        store_external_subjects=check.boolean("storeExternalSubjects", default=False),
    )
    check.done()
    if default_user is not None and load_user(tables, building_id, default_user) is None:
        raise Unprocessable(
            "defaultUserEmail must be a registered user of this building", reason="unknown_user"
        )
    tablestore.put_entity(
        tables(tablestore.SETTINGS),
        {
            "PartitionKey": building_id,
            "RowKey": SETTINGS_ROW_KEY,
            "defaultUserEmail": settings.default_user_email,
            "storeExternalSubjects": settings.store_external_subjects,
            "updatedAt": tablestore.utc_now(),
        },
    )
    return settings_view(settings)


# --- attribution lookup (sync of Outlook bookings) ---------------------------------------------


class StoredUsers(Mapping[str, User]):
    """A building's registered users as `attribute()` reads them: point reads on demand, each
    address read at most once per instance (absent ones too). Buildings import tens of thousands
    of users; a sync round meets a handful of organizers, so loading them all would be waste.

    Only `get` / `[]` look in storage; iterating and `len` cover the addresses read so far.
    """

    def __init__(self, tables: TableSource, building_id: str) -> None:
        self._tables = tables
        self._building_id = building_id
        self._seen: dict[str, User | None] = {}

    def __getitem__(self, email: str) -> User:
        if email not in self._seen:
            address = normalise_email(email)
            self._seen[email] = (
                load_user(self._tables, self._building_id, address) if address else None
            )
        user = self._seen[email]
        if user is None:
            raise KeyError(email)
        return user

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._seen.items() if v is not None])

    def __len__(self) -> int:
        return sum(1 for v in self._seen.values() if v is not None)


@dataclass(frozen=True)
class BuildingAttributor:
    """The attribution rule bound to one building's users, companies and settings (read once)."""

    users: StoredUsers
    companies: tuple[Company, ...]
    settings: BuildingSettings

    def __call__(self, email: str | None) -> Attribution:
        return attribute(
            email,
            users=self.users,
            companies=self.companies,
            default_user_email=self.settings.default_user_email,
        )


def load_attributor(tables: TableSource, building_id: str) -> BuildingAttributor:
    """Attribution for one building: companies and settings now, users on demand."""
    return BuildingAttributor(
        StoredUsers(tables, building_id),
        tuple(load_companies(tables, building_id)),
        load_building_settings(tables, building_id),
    )
