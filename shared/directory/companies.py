"""The companies (tenants) of a building: what attribution matches a booker's domain against.

Storage (docs/DESIGN.md): `companies` (building, companyId) with `name` and `domains` (a JSON list).
A company still referenced by a registered user cannot be deleted: 409 `company_in_use` (a check,
not a storage invariant: a user written concurrently with the deletion can still reference it;
attribution then reports the user with that company id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from shared.core.addresses import normalise_domain
from shared.core.errors import Conflict, NotFound
from shared.core.paging import Listed, parse_top
from shared.core.validate import Checker, check_building, check_path
from shared.directory.attribution import Company
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

DOMAINS_MAX = 50


class CompanyOut(TypedDict):
    id: str
    name: str
    domains: list[str]


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


def list_companies(
    tables: TableSource, building_id: str, top: str | None, continuation_token: str | None
) -> Listed[CompanyOut]:
    """One page of the building's companies, ordered by id; follow the token until None."""
    check_building(building_id)
    page = tablestore.query_page(
        tables(tablestore.COMPANIES),
        "PartitionKey eq @b",
        {"b": building_id},
        top=parse_top(top),
        continuation_token=continuation_token,
    )
    return Listed(
        [company_view(_company_from_entity(e)) for e in page.items], page.continuation_token
    )


def get_company(tables: TableSource, building_id: str, company_id: str) -> CompanyOut:
    check_path(building=building_id, companyId=company_id)
    entity = tablestore.get_entity(tables(tablestore.COMPANIES), building_id, company_id)
    if entity is None:
        raise NotFound("No such company in this building", reason="company_not_found")
    return company_view(_company_from_entity(entity))


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
