"""Pure units of the emulator core: clock, token verification reasons, directory permissions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.m365.clock import Clock
from devstack.m365.control import load_scenario
from devstack.m365.directory import GRAPH_RESOURCE, Directory, SeedError
from devstack.m365.tokens import InvalidToken, TokenService

HOST = "https://127.0.0.1:1"


def test_clock_advances_and_never_goes_back() -> None:
    clock = Clock()
    before = clock.now()
    after = clock.advance(3600)
    assert after - before >= dt.timedelta(seconds=3600)
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError):
        clock.advance(-1)
    target = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert abs((clock.set(target) - target).total_seconds()) < 1


@pytest.fixture
def world() -> tuple[Clock, Directory, TokenService, dict[str, Any]]:
    clock = Clock()
    directory = Directory(clock)
    tokens = TokenService(clock, directory)
    tokens.authority_host = HOST
    seed = directory.seed(load_scenario("demo"), fresh=True)
    return clock, directory, tokens, seed


def _claims(seed: dict[str, Any], tokens: TokenService, **extra: Any) -> dict[str, Any]:
    tid = seed["tenant"]["id"]
    return {"aud": GRAPH_RESOURCE, "iss": tokens.issuer(tid), "tid": tid, **extra}


def reason(tokens: TokenService, token: str, audiences: list[str]) -> str:
    with pytest.raises(InvalidToken) as error:
        tokens.verify(token, audiences)
    return error.value.reason


def test_verify_reasons(world: tuple[Clock, Directory, TokenService, dict[str, Any]]) -> None:
    clock, _, tokens, seed = world
    good = tokens.issue(_claims(seed, tokens))
    assert tokens.verify(good, [GRAPH_RESOURCE])["tid"] == seed["tenant"]["id"]
    assert reason(tokens, "nonsense", [GRAPH_RESOURCE]) == "malformed"
    assert reason(tokens, good, ["https://vault.azure.net"]) == "wrong_audience"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        _claims(seed, tokens, exp=2**31), other_key, "RS256", headers={"kid": tokens.kid}
    )
    assert reason(tokens, forged, [GRAPH_RESOURCE]) == "bad_signature"
    wrong_iss = tokens.issue({**_claims(seed, tokens), "iss": "https://elsewhere/v2.0"})
    assert reason(tokens, wrong_iss, [GRAPH_RESOURCE]) == "wrong_issuer"
    unknown = tokens.issue({**_claims(seed, tokens), "tid": "00000000-0000-0000-0000-000000000001"})
    assert reason(tokens, unknown, [GRAPH_RESOURCE]) == "unknown_tenant"
    future = tokens.issue({**_claims(seed, tokens), "nbf": int(clock.timestamp()) + 3600})
    assert reason(tokens, future, [GRAPH_RESOURCE]) == "not_yet_valid"
    # Set the clock relative to the token's own `exp`: the emulator clock runs on real time, so a
    # fixed advance after slow steps (the RSA key above) would drift across the boundary.
    expires = dt.datetime.fromtimestamp(
        jwt.decode(good, options={"verify_signature": False})["exp"], dt.UTC
    )
    clock.set(expires + dt.timedelta(seconds=299))
    tokens.verify(good, [GRAPH_RESOURCE])  # inside the 5 minutes of skew
    clock.set(expires + dt.timedelta(seconds=301))
    assert reason(tokens, good, [GRAPH_RESOURCE]) == "expired"


def test_revocation_voids_earlier_delegated_tokens_only(
    world: tuple[Clock, Directory, TokenService, dict[str, Any]],
) -> None:
    _, directory, tokens, seed = world
    tid, emma = seed["tenant"]["id"], seed["tenant"]["users"]["emma"]["id"]
    client = seed["apps"]["bookingbridge"]["clientId"]
    delegated = _claims(seed, tokens, oid=emma, scp="User.Read", azp=client)
    before = tokens.issue(delegated)
    app_only = tokens.issue(_claims(seed, tokens, oid="sp", roles=["Calendars.Read"], azp=client))
    directory.revoke_grant(tid, emma, client)
    after = tokens.issue(delegated)  # same second: still judged by precise issue time
    assert reason(tokens, before, [GRAPH_RESOURCE]) == "revoked"
    tokens.verify(after, [GRAPH_RESOURCE])
    tokens.verify(app_only, [GRAPH_RESOURCE])


def test_directory_permission_queries(
    world: tuple[Clock, Directory, TokenService, dict[str, Any]],
) -> None:
    _, directory, _, seed = world
    tenant = seed["tenant"]
    tid, client = tenant["id"], seed["apps"]["bookingbridge"]["clientId"]
    admin, emma = tenant["users"]["admin"], tenant["users"]["emma"]
    assert directory.tenant(tenant["domain"]).id == tid  # type: ignore[union-attr]
    assert directory.user(tid, emma["userPrincipalName"].upper()).id == emma["id"]  # type: ignore[union-attr]
    assert directory.user(tid, admin["id"]).is_admin  # type: ignore[union-attr]
    # Demo admin consent: Place.Read.All delegated tenant-wide, application permissions.
    assert directory.delegated_scopes(tid, client, emma["id"]) == {"Place.Read.All"}
    assert directory.application_permissions(tid, client) == {
        "Calendars.Read",
        "Calendars.ReadWrite",
        "Place.Read.All",
    }
    directory.grant_delegated(tid, client, emma["id"], GRAPH_RESOURCE, ["Calendars.Read"])
    assert directory.delegated_scopes(tid, client, emma["id"]) == {
        "Place.Read.All",
        "Calendars.Read",
    }
    assert directory.delegated_scopes(tid, client, admin["id"]) == {"Place.Read.All"}
    assert directory.admin_delegated_scopes(tid, client) == {"Place.Read.All"}
    portal = seed["apps"]["portal"]["clientId"]
    assert directory.application_permissions(tid, portal, client) == {"Portal.Service"}
    assert directory.user_app_roles(tid, admin["id"], client) == {"Building.Admin"}
    room = tenant["users"]["boardroom4a"]["id"]
    assert directory.rbac_permissions(tid, client, room) == set()
    directory.revoke_grant(tid, emma["id"], client, remove_consent=True)
    assert directory.delegated_scopes(tid, client, emma["id"]) == {"Place.Read.All"}


def test_rbac_and_seed_validation() -> None:
    directory = Directory()
    scenario = load_scenario("demo")
    scenario["tenants"][0]["rbacAssignments"] = [
        {"app": "bookingbridge", "role": "Application Calendars.Read", "mailboxes": ["boardroom4a"]}
    ]
    seed = directory.seed(scenario, fresh=True)
    tenant = seed["tenant"]
    client = seed["apps"]["bookingbridge"]["clientId"]
    room = tenant["users"]["boardroom4a"]["id"]
    assert directory.rbac_permissions(tenant["id"], client, room) == {"Calendars.Read"}
    assert directory.rbac_permissions(tenant["id"], client, tenant["users"]["emma"]["id"]) == set()
    assert "password" not in tenant["users"]["boardroom4a"]
    # Seeding the same ids twice is refused; fresh=True makes new ones.
    directory.seed(load_scenario("demo"))
    with pytest.raises(SeedError):
        directory.seed(load_scenario("demo"))
    bad = load_scenario("demo")
    bad["tenants"][0]["calendarShares"] = [{"owner": "nobody", "sharedWith": "admin"}]
    apps_before = set(directory.apps)
    with pytest.raises(SeedError):
        directory.seed(bad, fresh=True)
    assert set(directory.apps) == apps_before  # nothing half-seeded
