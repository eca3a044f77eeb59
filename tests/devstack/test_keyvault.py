"""The Key Vault emulator driven by the real SecretClient, and its token checks with raw HTTP."""

from __future__ import annotations

from typing import Any

import msal
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.m365 import RunningEmulator
from tests.integration import emulator_fixtures
from tests.integration.emulator_fixtures import (
    REDIRECT_URI,
    https_client,
    msal_app,
    redirect_params,
)

# Fixtures shared with other emulator tests (the names are what tests ask for).
fresh_demo = emulator_fixtures.fresh_demo
m365 = emulator_fixtures.m365

VAULT = "https://vault.azure.net"
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
API = {"api-version": "7.5"}


@pytest.fixture(scope="module")
def vault_tenant(m365: RunningEmulator) -> dict[str, Any]:
    """The vault belongs to the first tenant seeded: the demo tenant."""
    return m365.seed


def credential(m365: RunningEmulator, seed: dict[str, Any]) -> ClientSecretCredential:
    app = seed["apps"]["bookingbridge"]
    return ClientSecretCredential(
        seed["tenant"]["id"],
        app["clientId"],
        app["clientSecret"],
        authority=m365.base_url,
        disable_instance_discovery=True,
        connection_verify=m365.ca_bundle,
    )


@pytest.fixture(scope="module")
def secrets(m365: RunningEmulator, vault_tenant: dict[str, Any]) -> SecretClient:
    return SecretClient(
        m365.key_vault_url,
        credential(m365, vault_tenant),
        verify_challenge_resource=False,
        connection_verify=m365.ca_bundle,
    )


def app_token(m365: RunningEmulator, seed: dict[str, Any], scope: str) -> str:
    app = seed["apps"]["bookingbridge"]
    result = msal_app(
        m365, seed["tenant"]["id"], app["clientId"], app["clientSecret"]
    ).acquire_token_for_client([scope])
    assert "access_token" in result, result
    token: str = result["access_token"]
    return token


def test_set_get_versions_list(secrets: SecretClient) -> None:
    first = secrets.set_secret(
        "refresh-cache", "v1", content_type="application/json", tags={"a": "1"}
    )
    second = secrets.set_secret("refresh-cache", "v2")
    assert first.properties.version != second.properties.version
    assert secrets.get_secret("refresh-cache").value == "v2"
    old = secrets.get_secret("refresh-cache", first.properties.version)
    assert old.value == "v1" and old.properties.content_type == "application/json"
    assert old.properties.tags == {"a": "1"}
    versions = {p.version for p in secrets.list_properties_of_secret_versions("refresh-cache")}
    assert versions == {first.properties.version, second.properties.version}
    for i in range(30):  # more than one page (25 per page)
        secrets.set_secret(f"bulk-{i:02d}", "x")
    names = {p.name for p in secrets.list_properties_of_secrets()}
    assert {"refresh-cache", "bulk-00", "bulk-29"} <= names
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("no-such-secret")


def test_delete_recover_purge(secrets: SecretClient) -> None:
    secrets.set_secret("tenant-grant", "s3cr3t")
    deleted = secrets.begin_delete_secret("tenant-grant").result()
    assert deleted.recovery_id and deleted.scheduled_purge_date and deleted.deleted_date
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("tenant-grant")
    with pytest.raises(ResourceExistsError):  # 409 Conflict while soft-deleted
        secrets.set_secret("tenant-grant", "again")
    assert "tenant-grant" in {d.name for d in secrets.list_deleted_secrets()}
    assert secrets.get_deleted_secret("tenant-grant").name == "tenant-grant"
    secrets.begin_recover_deleted_secret("tenant-grant").result()
    assert secrets.get_secret("tenant-grant").value == "s3cr3t"
    secrets.begin_delete_secret("tenant-grant").result()
    secrets.purge_deleted_secret("tenant-grant")
    with pytest.raises(ResourceNotFoundError):
        secrets.get_deleted_secret("tenant-grant")
    secrets.set_secret("tenant-grant", "fresh")  # the name is free again after purge
    assert secrets.get_secret("tenant-grant").value == "fresh"


def test_missing_token_and_api_version(m365: RunningEmulator, vault_tenant: dict[str, Any]) -> None:
    url = f"{m365.key_vault_url}secrets/anything"
    with https_client(m365) as client:
        response = client.get(url, params=API)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        tenant_id = vault_tenant["tenant"]["id"]
        assert challenge == (
            f'Bearer authorization="{m365.base_url}/{tenant_id}", resource="{VAULT}"'
        )
        assert response.json()["error"]["code"] == "Unauthorized"
        token = app_token(m365, vault_tenant, f"{VAULT}/.default")
        no_version = client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert no_version.status_code == 400
        assert no_version.json()["error"]["code"] == "BadParameter"


def test_expired_wrong_audience_and_wrong_tenant_tokens(
    m365: RunningEmulator, vault_tenant: dict[str, Any], fresh_demo: dict[str, Any]
) -> None:
    url = f"{m365.key_vault_url}secrets"
    graph_token = app_token(m365, vault_tenant, "https://graph.microsoft.com/.default")
    other_tenant = app_token(m365, fresh_demo, f"{VAULT}/.default")
    good = app_token(m365, vault_tenant, f"{VAULT}/.default")
    with https_client(m365) as client:

        def call(token: str) -> Any:
            return client.get(url, params=API, headers={"Authorization": f"Bearer {token}"})

        assert call(good).status_code == 200
        wrong_aud = call(graph_token)
        assert wrong_aud.status_code == 401 and "AKV10022" in wrong_aud.json()["error"]["message"]
        assert "www-authenticate" in wrong_aud.headers
        wrong_tenant = call(other_tenant)
        assert wrong_tenant.status_code == 401
        assert "AKV10032: Invalid issuer" in wrong_tenant.json()["error"]["message"]
        garbage = call("not-a-jwt")
        assert garbage.status_code == 401
        m365.advance_clock(3599 + 301)  # past expiry and Key Vault's 5 minutes of clock skew
        expired = call(good)
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "Unauthorized"
        assert "expired" in expired.json()["error"]["message"]


def test_delegated_token_works_and_revocation_stops_it(
    m365: RunningEmulator, vault_tenant: dict[str, Any]
) -> None:
    """A user's Key Vault token (user_impersonation) works until their sessions are revoked."""
    # The vault tenant is shared: revoke only a user no other test signs in with.
    tenant, user = vault_tenant["tenant"], vault_tenant["tenant"]["users"]["liam"]
    app = vault_tenant["apps"]["bookingbridge"]
    client_app: msal.ConfidentialClientApplication = msal_app(
        m365, tenant["id"], app["clientId"], app["clientSecret"]
    )
    flow = client_app.initiate_auth_code_flow(
        [f"{VAULT}/user_impersonation"], redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    with https_client(m365) as client:
        response = redirect_params(client.get(flow["auth_uri"]), REDIRECT_URI)
        result = client_app.acquire_token_by_auth_code_flow(flow, response)
        assert "access_token" in result, result
        headers = {"Authorization": f"Bearer {result['access_token']}"}
        ok = client.get(f"{m365.key_vault_url}secrets", params=API, headers=headers)
        assert ok.status_code == 200, ok.text
        m365.control.post(
            "identity/revoke", json={"tenant": tenant["id"], "user": user["id"]}
        ).raise_for_status()
        refused = client.get(f"{m365.key_vault_url}secrets", params=API, headers=headers)
        assert refused.status_code == 401


def test_secret_client_surfaces_auth_failure_for_foreign_tenant(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    foreign = SecretClient(
        m365.key_vault_url,
        credential(m365, fresh_demo),
        verify_challenge_resource=False,
        connection_verify=m365.ca_bundle,
    )
    # The vault's challenge names its own tenant; azure-identity refuses to fetch a token for a
    # tenant the credential was not made for (as against Azure), so the call fails client-side.
    with pytest.raises(ClientAuthenticationError, match="not configured to acquire tokens"):
        foreign.get_secret("anything")
