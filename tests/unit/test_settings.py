"""Settings: lazy, typed, and one error naming every problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.core import settings as settings_module
from shared.core.settings import TIMER_SCHEDULES, SettingsError, load_settings
from tests.unit.test_infra import settings_read_by_code

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


# --- the documentation table, the example settings and the timers, held to the code ----------------

ROOT = Path(__file__).resolve().parents[2]
CELL = re.compile(r"`([^`]+)`")


def documented_settings() -> dict[str, str]:
    """Setting name -> the "default" cell of shared/core/settings.py's documentation table."""
    table: dict[str, str] = {}
    for line in (settings_module.__doc__ or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        for name in CELL.findall(cells[0]):
            table[name] = cells[2]
    return table


def test_the_documentation_table_is_the_code() -> None:
    table = documented_settings()
    read = settings_read_by_code()
    assert set(table) == set(read), set(table) ^ set(read)
    for name, default in read.items():
        cell = table[name]
        if default is None:
            # No literal default: either required, or a value computed or left unset.
            assert not cell.startswith("`"), (name, cell)
        else:
            assert CELL.match(cell) and CELL.match(cell).group(1) == default, (name, cell, default)
    # "required" exactly where load_settings refuses to start without the setting.
    required = {name for name, cell in table.items() if cell == "required"}
    assert required == set(VALID) - {"AzureWebJobsStorage"}
    for name in required:
        with pytest.raises(SettingsError) as info:
            load_settings({k: v for k, v in VALID.items() if k != name})
        assert any(name in p for p in info.value.problems), name


def test_every_timer_schedule_is_known_and_checked() -> None:
    used = {
        m
        for path in (ROOT / "functions").glob("*.py")
        for m in re.findall(r"%(\w+)%", path.read_text())
    }
    assert used == set(TIMER_SCHEDULES), used ^ set(TIMER_SCHEDULES)
    for name, value in TIMER_SCHEDULES.items():
        assert len(value.split()) == 6, name
        with pytest.raises(SettingsError, match=name):
            load_settings({**VALID, name: "every day"})


def test_the_example_local_settings_are_complete() -> None:
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    # Without its schedule `func start` cannot index a timer (TIMER_SCHEDULES).
    for name, value in TIMER_SCHEDULES.items():
        assert values.get(name) == value, name
    # Nothing the app does not read, apart from what the host needs locally: the worker runtime,
    # and the Event Hubs trigger switched off (no hub to listen to; issue 17).
    assert set(values) - set(settings_read_by_code()) == {
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobs.graph_eventhub_notifications.Disabled",
    }
    assert values["AzureWebJobs.graph_eventhub_notifications.Disabled"] == "true"
    # Everything required is there and well-formed (the CA path is a placeholder to replace).
    load_settings({k: v for k, v in values.items() if k != "BB_CA_BUNDLE"})


# --- notification delivery (issue 17) --------------------------------------------------------------

SECRET_URL = "https://kv-bookingbridge.vault.azure.net/secrets/graph-eventhub-send"


def test_event_hub_delivery_needs_its_secret_url_and_tenant() -> None:
    assert load_settings(VALID).notification_delivery == "webhook"
    with pytest.raises(SettingsError) as info:
        load_settings({**VALID, "BB_NOTIFICATION_DELIVERY": "eventhub"})
    assert sorted(p.split()[0] for p in info.value.problems) == [
        "BB_EVENTHUB_SECRET_URL",
        "BB_EVENTHUB_TENANT",
    ]
    for tenant in ("contoso.onmicrosoft.com", GUID):
        s = load_settings(
            {
                **VALID,
                "BB_NOTIFICATION_DELIVERY": "eventhub",
                "BB_EVENTHUB_SECRET_URL": SECRET_URL,
                "BB_EVENTHUB_TENANT": tenant,
            }
        )
        assert (s.notification_delivery, s.eventhub_secret_url, s.eventhub_tenant) == (
            "eventhub",
            SECRET_URL,
            tenant,
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BB_NOTIFICATION_DELIVERY", "eventgrid"),
        ("BB_NOTIFICATION_DELIVERY", "EventHub"),
        ("BB_EVENTHUB_SECRET_URL", "http://kv-bookingbridge.vault.azure.net/secrets/hub"),
        ("BB_EVENTHUB_SECRET_URL", "https://kv-bookingbridge.vault.azure.net/keys/hub"),
        ("BB_EVENTHUB_SECRET_URL", "https://example.com/secrets/hub"),
        ("BB_EVENTHUB_SECRET_URL", "https://kv-bookingbridge.vault.azure.net/secrets/hub_1"),
        ("BB_EVENTHUB_SECRET_URL", f"{SECRET_URL}?tenantId=contoso.com"),  # the tenant is apart
        ("BB_EVENTHUB_TENANT", "contoso"),
        ("BB_EVENTHUB_TENANT", "contoso.com&x=1"),
        ("BB_EVENTHUB_TENANT", "not-a-guid-0000-0000-000000000000"),
    ],
)
def test_a_malformed_delivery_setting_is_named(name: str, value: str) -> None:
    env = {
        **VALID,
        "BB_NOTIFICATION_DELIVERY": "eventhub",
        "BB_EVENTHUB_SECRET_URL": SECRET_URL,
        "BB_EVENTHUB_TENANT": "contoso.com",
        name: value,
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert [p.split()[0] for p in info.value.problems] == [name], info.value.problems
