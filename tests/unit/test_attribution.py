"""The attribution rule, table-driven: every branch of `attribute` and the edges of address matching."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from shared.core.addresses import normalise_domain, normalise_email, without_subaddress
from shared.directory.attribution import Attribution, Company, User, attribute

CONTOSO = Company("contoso", "Contoso", ("contoso.com", "contoso.nl"))
FABRIKAM = Company("fabrikam", "Fabrikam", ("fabrikam.com", "sales.fabrikam.com"))
# Two companies of the building sharing one domain (a parent company and its subsidiary).
NORTH = Company("north", "Woodgrove North", ("woodgrove.com",))
SOUTH = Company("south", "Woodgrove South", ("WoodGrove.com", "south.woodgrove.com"))
COMPANIES = (CONTOSO, FABRIKAM, NORTH, SOUTH)

USERS = {
    u.email: u
    for u in (
        User("ann@contoso.com", "Ann", "contoso"),
        User("bob+desk@fabrikam.com", "Bob", "fabrikam"),
        User("reception@woodgrove.com", "Reception", "north"),
        User("carl@gmail.com", "Carl", "contoso"),  # a registered user outside every domain
    )
}


@dataclass(frozen=True)
class Case:
    name: str
    email: str | None
    expected: Attribution
    default_user: str | None = "reception@woodgrove.com"
    users: dict[str, User] | None = None


def _user(company: str, email: str, reason: str = "registered_user") -> Attribution:
    return Attribution("user", company, email, reason)


def _company(company: str) -> Attribution:
    return Attribution("company", company, None, "domain_match")


def _none(reason: str) -> Attribution:
    return Attribution("unattributed", None, None, reason)


DEFAULT = Attribution("default_user", "north", "reception@woodgrove.com", "ambiguous_domain")

CASES = [
    # missing and malformed addresses
    Case("none", None, _none("missing_email")),
    Case("empty", "", _none("missing_email")),
    Case("blank", "   ", _none("missing_email")),
    Case("no at sign", "ann.contoso.com", _none("invalid_email")),
    Case("no local part", "@contoso.com", _none("invalid_email")),
    Case("no domain", "ann@", _none("invalid_email")),
    Case("single-label domain", "ann@localhost", _none("invalid_email")),
    Case("ip literal", "ann@[10.0.0.1]", _none("invalid_email")),
    Case("space inside", "ann smith@contoso.com", _none("invalid_email")),
    Case("display-name form", "Ann <ann@contoso.com>", _none("invalid_email")),
    Case("two at signs", "ann@x@contoso.com", _none("invalid_email")),
    Case("double dot", "ann..b@contoso.com", _none("invalid_email")),
    # registered users
    Case("registered", "ann@contoso.com", _user("contoso", "ann@contoso.com")),
    Case("registered, any case", "ANN@Contoso.COM", _user("contoso", "ann@contoso.com")),
    Case(
        "registered, surrounding spaces", "  ann@contoso.com ", _user("contoso", "ann@contoso.com")
    ),
    Case("registered, trailing dot", "ann@contoso.com.", _user("contoso", "ann@contoso.com")),
    Case("registered outside every domain", "carl@gmail.com", _user("contoso", "carl@gmail.com")),
    Case(
        "registered beats an ambiguous domain",
        "reception@woodgrove.com",
        _user("north", "reception@woodgrove.com"),
    ),
    # plus-addressing
    Case(
        "plus tag of a registered user",
        "ann+lunch@contoso.com",
        _user("contoso", "ann@contoso.com", "registered_user_subaddress"),
    ),
    Case(
        "registered with a tag, booked with it",
        "bob+desk@fabrikam.com",
        _user("fabrikam", "bob+desk@fabrikam.com"),
    ),
    Case("registered with a tag, booked without", "bob@fabrikam.com", _company("fabrikam")),
    Case("registered with a tag, booked with another", "bob+x@fabrikam.com", _company("fabrikam")),
    Case("plus tag, unknown user → domain", "zoe+x@contoso.com", _company("contoso")),
    Case("leading plus is not a tag", "+ann@contoso.com", _company("contoso")),
    # domains
    Case("domain match", "zoe@contoso.com", _company("contoso")),
    Case("second domain of a company", "zoe@contoso.nl", _company("contoso")),
    Case("domain match, any case", "Zoe@CONTOSO.com", _company("contoso")),
    Case("subdomain not listed", "zoe@eu.contoso.com", _none("no_domain_match")),
    Case("parent of a listed subdomain", "zoe@fabrikam.com", _company("fabrikam")),
    Case("listed subdomain", "zoe@sales.fabrikam.com", _company("fabrikam")),
    Case("subdomain listed by one of two sharers", "zoe@south.woodgrove.com", _company("south")),
    Case("suffix is not a domain", "zoe@notcontoso.com", _none("no_domain_match")),
    Case("unknown domain", "zoe@gmail.com", _none("no_domain_match")),
    # several companies share the domain
    Case("ambiguous → default user", "zoe@woodgrove.com", DEFAULT),
    Case("ambiguous, any case → default user", "ZOE@WOODGROVE.COM", DEFAULT),
    Case(
        "ambiguous, default in another case",
        "zoe@woodgrove.com",
        DEFAULT,
        "Reception@Woodgrove.com",
    ),
    Case("ambiguous, no default user", "zoe@woodgrove.com", _none("no_default_user"), None),
    Case("ambiguous, empty default user", "zoe@woodgrove.com", _none("no_default_user"), ""),
    Case(
        "ambiguous, default user not registered",
        "zoe@woodgrove.com",
        _none("default_user_not_registered"),
        "gone@woodgrove.com",
    ),
    Case(
        "no domain match ignores the default user",
        "zoe@gmail.com",
        _none("no_domain_match"),
        "reception@woodgrove.com",
    ),
    Case("no users at all", "ann@contoso.com", _company("contoso"), None, {}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_attribute(case: Case) -> None:
    users = USERS if case.users is None else case.users
    got = attribute(
        case.email, users=users, companies=COMPANIES, default_user_email=case.default_user
    )
    assert got == case.expected


def test_a_company_listed_twice_is_one_match() -> None:
    got = attribute(
        "zoe@contoso.com", users={}, companies=[CONTOSO, CONTOSO], default_user_email=None
    )
    assert got == _company("contoso")


class PointReads(Mapping[str, User]):
    """What a storage-backed `users` looks like: point reads only, no listing."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> User:
        self.asked.append(key)
        return USERS[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("attribution must not list users")

    def __len__(self) -> int:
        raise AssertionError("attribution must not count users")


def test_users_are_only_read_by_address() -> None:
    lookups = PointReads()
    got = attribute(
        "ann+x@contoso.com", users=lookups, companies=COMPANIES, default_user_email=None
    )
    assert got.kind == "user"
    assert lookups.asked == ["ann+x@contoso.com", "ann@contoso.com"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Contoso.COM", "contoso.com"),
        ("contoso.com.", "contoso.com"),
        (" contoso.com ", "contoso.com"),
        ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("a-b.co.uk", "a-b.co.uk"),
        ("contoso", None),
        ("-contoso.com", None),
        ("contoso-.com", None),
        ("conto so.com", None),
        ("contoso..com", None),
        ("10.0.0.1", None),
        ("a" * 64 + ".com", None),
        ("", None),
    ],
)
def test_normalise_domain(text: str, expected: str | None) -> None:
    assert normalise_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ann.Smith+Tag@Contoso.COM", "ann.smith+tag@contoso.com"),
        ("o'brien#1/x?@contoso.com", "o'brien#1/x?@contoso.com"),
        ("jörg@münchen.de", "jörg@xn--mnchen-3ya.de"),
        ("a" * 64 + "@contoso.com", "a" * 64 + "@contoso.com"),
        ("a" * 65 + "@contoso.com", None),
        ("ann @contoso.com", None),
        ("ann@ contoso.com", None),
        (".ann@contoso.com", None),
        ("ann.@contoso.com", None),
        ('"ann"@contoso.com', None),
        ("ann\t@contoso.com", None),
    ],
)
def test_normalise_email(text: str, expected: str | None) -> None:
    assert normalise_email(text) == expected


def test_without_subaddress() -> None:
    assert without_subaddress("ann+x+y@contoso.com") == "ann@contoso.com"
    assert without_subaddress("ann@contoso.com") == "ann@contoso.com"
    assert without_subaddress("+x@contoso.com") == "+x@contoso.com"
