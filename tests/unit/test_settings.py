"""Settings: lazy, typed, and one error naming every problem."""

from __future__ import annotations

import pytest

from shared.core.settings import SettingsError, load_settings

GUID = "8a3c8f0e-2f6b-4a57-9f3e-1b2c3d4e5f60"
VALID = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "BB_KEY_VAULT_URL": "https://vault.example/",
    "BB_CLIENT_ID": GUID,
    "BB_PUBLIC_BASE_URL": "http://127.0.0.1:7071/api",
    "BB_API_AUDIENCE": "api://bookingbridge",
    "BB_API_TENANT_ID": GUID,
}


def test_valid_settings_apply_defaults_and_strip_slashes() -> None:
    s = load_settings(VALID)
    assert s.key_vault_url == "https://vault.example"
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert s.storage.connection_string == "UseDevelopmentStorage=true"
    assert s.verify is True
    assert s.identity.client_secret is None


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"BB_GRAPH_BASE_URL": "http://graph.local", "BB_CLIENT_ID": "nope"})
    problems = info.value.problems
    text = str(info.value)
    for name in (
        "AzureWebJobsStorage",
        "BB_KEY_VAULT_URL",
        "BB_GRAPH_BASE_URL",
        "BB_CLIENT_ID",
        "BB_PUBLIC_BASE_URL",
        "BB_API_AUDIENCE",
        "BB_API_TENANT_ID",
    ):
        assert any(name in p for p in problems), name
        assert name in text
    assert len(problems) == 7


def test_identity_based_storage_builds_endpoints() -> None:
    env = {k: v for k, v in VALID.items() if k != "AzureWebJobsStorage"}
    env["AzureWebJobsStorage__accountName"] = "stbb123"
    s = load_settings(env)
    assert s.storage.connection_string is None
    assert s.storage.table_endpoint == "https://stbb123.table.core.windows.net"
    assert s.storage.queue_endpoint == "https://stbb123.queue.core.windows.net"


def test_missing_ca_file_and_half_a_client_secret_are_refused(tmp_path) -> None:
    env = {**VALID, "BB_CA_BUNDLE": str(tmp_path / "missing.pem"), "AZURE_CLIENT_SECRET": "x"}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert any("BB_CA_BUNDLE" in p for p in info.value.problems)
    assert any("AZURE_CLIENT_SECRET" in p for p in info.value.problems)


def test_ca_bundle_is_what_clients_verify_with(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings({**VALID, "BB_CA_BUNDLE": str(ca)}).verify == str(ca)
