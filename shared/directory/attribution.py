"""Who a booking belongs to: the attribution rule, as one pure function.

    booker's email
    ├── missing / blank ............................ unattributed   missing_email
    ├── not an address ............................. unattributed   invalid_email
    ├── a registered user (exact address) .......... user           registered_user
    ├── ann+tag@x: ann@x is a registered user ...... user           registered_user_subaddress
    └── else by the address's domain, among the building's companies:
        ├── exactly one company lists it ........... company        domain_match
        ├── none ................................... unattributed   no_domain_match
        └── several:
            ├── default user set and registered .... default_user   ambiguous_domain
            ├── default user set, not registered ... unattributed   default_user_not_registered
            └── no default user .................... unattributed   no_default_user

Addresses and domains compare in their normalised form (`shared.core.addresses`): case-insensitive;
a subdomain (`sales.contoso.com`) matches only a company that lists it. Plus-addressing: the exact
address wins; only when it is not registered is the `+tag` dropped to find the registered user
(Exchange delivers `ann+tag@` to `ann@`, so it is the same person). The reverse never happens:
`ann@` is not `ann+tag@`.

The caller passes what it already has: `users` maps normalised addresses to registered users (a
dict, or a lazy Mapping doing point reads: only `.get` is used); `companies` are the building's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.core.addresses import domain_of, normalise_domain, normalise_email, without_subaddress

AttributionKind = Literal["user", "company", "default_user", "unattributed"]


@dataclass(frozen=True)
class Company:
    """A company (tenant) of a building; `domains` normalised (see `shared.core.addresses`)."""

    id: str
    name: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class User:
    """A registered user of a building; `email` normalised."""

    email: str
    name: str
    company_id: str


@dataclass(frozen=True)
class Attribution:
    kind: AttributionKind
    company_id: str | None
    user_email: str | None
    reason: str


def attribute(
    email: str | None,
    *,
    users: Mapping[str, User],
    companies: Sequence[Company],
    default_user_email: str | None,
) -> Attribution:
    """Attribute a booker (by email) to a user, a company, the default user, or nobody."""
    if email is None or not email.strip():
        return Attribution("unattributed", None, None, "missing_email")
    address = normalise_email(email)
    if address is None:
        return Attribution("unattributed", None, None, "invalid_email")

    user = users.get(address)
    reason = "registered_user"
    if user is None and (base := without_subaddress(address)) != address:
        user, reason = users.get(base), "registered_user_subaddress"
    if user is not None:
        return Attribution("user", user.company_id, user.email, reason)

    domain = domain_of(address)
    matches = {c.id for c in companies if domain in {normalise_domain(d) for d in c.domains}}
    if len(matches) == 1:
        return Attribution("company", matches.pop(), None, "domain_match")
    if not matches:
        return Attribution("unattributed", None, None, "no_domain_match")
    if not default_user_email:
        return Attribution("unattributed", None, None, "no_default_user")
    default = users.get(normalise_email(default_user_email) or default_user_email)
    if default is None:
        return Attribution("unattributed", None, None, "default_user_not_registered")
    return Attribution("default_user", default.company_id, default.email, "ambiguous_domain")
