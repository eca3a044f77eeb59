"""Bearer token validation and the role → building rules, with locally made keys."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.api.auth import JwksCache, TokenValidator
from shared.core.errors import Forbidden, Unauthorized

ISSUER = "https://login.example/tid-1/v2.0"
AUDIENCE = "api://bookingbridge"


def _key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return private, jwk


KEY, JWK = _key("k1")
OTHER, OTHER_JWK = _key("k2")


def _token(
    claims: dict[str, Any] | None = None, key: Any = KEY, kid: str = "k1", **overrides: Any
) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "oid": "o-1",
        "tid": "tid-1",
    }
    body.update(claims or {})
    body.update(overrides)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


class Fetcher:
    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.keys = list(jwks)
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"keys": self.keys}


def _validator(fetcher: Fetcher | None = None) -> TokenValidator:
    return TokenValidator(ISSUER, [AUDIENCE, "client-guid"], JwksCache(fetcher or Fetcher(JWK)))


def test_portal_service_reaches_every_building() -> None:
    caller = _validator().caller("Bearer " + _token({"roles": ["Portal.Service"]}))
    assert caller.buildings is None and caller.can_reach("any")
    caller.require_building("b-42")


def test_building_admin_reaches_only_its_buildings() -> None:
    caller = _validator().caller(
        "Bearer " + _token({"roles": ["Building.Admin"], "buildings": ["b1", "b2"]})
    )
    assert caller.can_reach("b1") and not caller.can_reach("b3")
    with pytest.raises(Forbidden):
        caller.require_building("b3")
    comma = _validator().caller(
        "Bearer " + _token({"roles": ["Building.Admin"], "buildings": "b1, b9"})
    )
    assert comma.buildings == frozenset({"b1", "b9"})


def test_v2_audience_is_the_client_id() -> None:
    assert _validator().caller("Bearer " + _token({"roles": ["Portal.Service"]}, aud="client-guid"))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Basic abc", "missing_token"),
        ("Bearer not-a-jwt", "malformed_token"),
        (
            "Bearer " + _token({"roles": ["Portal.Service"]}, exp=int(time.time()) - 3600),
            "token_expired",
        ),
        ("Bearer " + _token({"roles": ["Portal.Service"]}, aud="api://other"), "wrong_audience"),
        (
            "Bearer " + _token({"roles": ["Portal.Service"]}, iss="https://evil/v2.0"),
            "wrong_issuer",
        ),
        ("Bearer " + _token({"roles": ["Portal.Service"]}, key=OTHER, kid="k1"), "invalid_token"),
        ("Bearer " + _token({"roles": ["Portal.Service"]}, key=OTHER, kid="k2"), "unknown_key"),
    ],
)
def test_bad_tokens_are_401_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized) as info:
        _validator().caller(header)
    assert info.value.reason == reason


def test_alg_none_and_hs256_are_refused() -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "roles": ["Portal.Service"]}, None, algorithm="none"
    )
    with pytest.raises(Unauthorized):
        _validator().caller("Bearer " + unsigned)
    hs = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE}, "k" * 32, algorithm="HS256", headers={"kid": "k1"}
    )
    with pytest.raises(Unauthorized) as info:
        _validator().caller("Bearer " + hs)
    assert info.value.reason == "bad_algorithm"


def test_valid_token_without_role_is_403() -> None:
    with pytest.raises(Forbidden):
        _validator().caller("Bearer " + _token({"roles": ["Something.Else"]}))


def test_key_rollover_refetches_once_not_per_request() -> None:
    fetcher = Fetcher(JWK)
    validator = _validator(fetcher)
    validator.caller("Bearer " + _token({"roles": ["Portal.Service"]}))
    assert fetcher.calls == 1
    forged = "Bearer " + _token({"roles": ["Portal.Service"]}, key=OTHER, kid="k9")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            validator.caller(forged)
    assert fetcher.calls == 1  # inside the cooldown: unknown kids do not hammer the issuer
    validator.jwks._fetched_at -= 31  # the cooldown passed; Entra rolled its keys
    fetcher.keys.append(OTHER_JWK)
    assert validator.caller("Bearer " + _token({"roles": ["Portal.Service"]}, key=OTHER, kid="k2"))
    assert fetcher.calls == 2


# ------------------------------------------------------------- user (delegated) tokens
def _user_token(**claims: Any) -> str:
    """A console sign-in's token: what Entra issues for `{audience}/access_as_user`."""
    body: dict[str, Any] = {
        "scp": "access_as_user",
        "idtyp": "user",
        "roles": ["Building.Admin"],
        "buildings": ["b1", "b2"],
        "name": "Avery Admin",
        "preferred_username": "admin@contoso.example",
        "azp": "client-guid",
    }
    body.update(claims)
    return "Bearer " + _token({k: v for k, v in body.items() if v is not None}, aud="client-guid")


def test_user_token_with_building_admin_is_an_admin_of_its_buildings() -> None:
    caller = _validator().caller(_user_token())
    assert caller.delegated and caller.subject == "o-1" and caller.tenant_id == "tid-1"
    assert caller.buildings == frozenset({"b1", "b2"}) and caller.actor == "admin:o-1"
    assert caller.name == "admin@contoso.example"
    caller.require_building("b2")
    with pytest.raises(Forbidden) as info:
        caller.require_building("b3")
    assert info.value.reason == "building_forbidden"
    # Several scopes in `scp`, and no `idtyp` (an optional claim in Entra): still a user token.
    assert _validator().caller(_user_token(scp="User.Read access_as_user", idtyp=None)).delegated


@pytest.mark.parametrize("scp", ["", "User.Read", "access_as_user_x", None])
def test_user_token_without_the_api_scope_is_403(scp: str | None) -> None:
    # scp=None with idtyp=user: a person's token that names no scope at all.
    with pytest.raises(Forbidden) as info:
        _validator().caller(_user_token(scp=scp))
    assert info.value.reason == "missing_scope" and info.value.status == 403


def test_user_token_claiming_portal_service_is_never_global() -> None:
    both = _validator().caller(_user_token(roles=["Portal.Service", "Building.Admin"]))
    assert both.buildings == frozenset({"b1", "b2"}) and not both.can_reach("other")
    assert "Portal.Service" not in both.roles
    with pytest.raises(Forbidden) as info:
        _validator().caller(_user_token(roles=["Portal.Service"]))
    assert info.value.reason == "missing_role"


def test_user_token_without_building_admin_or_buildings() -> None:
    with pytest.raises(Forbidden) as info:
        _validator().caller(_user_token(roles=None))
    assert info.value.reason == "missing_role"
    nothing = _validator().caller(_user_token(buildings=None))
    assert nothing.buildings == frozenset() and not nothing.can_reach("b1")


def test_app_tokens_are_unchanged() -> None:
    app = {"idtyp": "app", "azp": "portal-guid"}
    service = _validator().caller("Bearer " + _token({"roles": ["Portal.Service"], **app}))
    assert service.buildings is None and not service.delegated
    admin = _validator().caller(
        "Bearer " + _token({"roles": ["Building.Admin"], "buildings": ["b1"], **app})
    )
    assert admin.buildings == frozenset({"b1"}) and not admin.delegated
