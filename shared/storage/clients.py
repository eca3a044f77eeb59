"""Per-process client singletons, created on first use (never one per invocation).

Every factory is a `functools.cache` function so a warm Functions worker reuses connections, token
caches and TLS sessions. Tests point settings at the local stack and call `reset_clients()`.

TLS: this machine (and many corporate ones) sets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, which silently
override a client's own `verify=`. Every HTTP client here is therefore built with `trust_env=False`
(httpx, requests) or an explicit `connection_verify` (Azure SDK), trusting `BB_CA_BUNDLE` when set.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import requests

from shared.core.settings import get_settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient, TableServiceClient
    from azure.keyvault.secrets import SecretClient
    from azure.storage.queue import QueueClient, QueueServiceClient

_Service = TypeVar("_Service", "TableServiceClient", "QueueServiceClient")

# Explicit timeouts: a hung dependency must never hang an invocation (the Graph webhook has 3 s).
HTTP_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
AZURE_CONNECTION_TIMEOUT = 5
AZURE_READ_TIMEOUT = 20


@functools.cache
def credential() -> TokenCredential:
    """The app's own identity: managed identity in Azure, a client secret on the local stack."""
    from azure.identity import ClientSecretCredential, ManagedIdentityCredential

    s = get_settings()
    if s.identity.client_secret:
        return ClientSecretCredential(
            tenant_id=s.identity.tenant_id or "",
            client_id=s.identity.client_id or "",
            client_secret=s.identity.client_secret,
            authority=s.authority_host,
            disable_instance_discovery=True,
            connection_verify=s.verify,
        )
    return ManagedIdentityCredential(client_id=s.identity.client_id)


def _storage_service(client_class: type[_Service], endpoint: str | None) -> _Service:
    """A Table or Queue service client: the connection string if set, else the storage identity."""
    s = get_settings().storage
    timeouts: dict[str, Any] = {
        "connection_timeout": AZURE_CONNECTION_TIMEOUT,
        "read_timeout": AZURE_READ_TIMEOUT,
    }
    if s.connection_string:
        return client_class.from_connection_string(s.connection_string, **timeouts)
    # The account URL is the first parameter of both (`endpoint` / `account_url`).
    return client_class(endpoint or "", credential=_storage_credential(), **timeouts)


@functools.cache
def table_service() -> TableServiceClient:
    from azure.data.tables import TableServiceClient

    return _storage_service(TableServiceClient, get_settings().storage.table_endpoint)


@functools.cache
def table(name: str) -> TableClient:
    """One client per table, created (idempotently) on first use."""
    client = table_service().get_table_client(name)
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        client.create_table()
    return client


@functools.cache
def queue_service() -> QueueServiceClient:
    from azure.storage.queue import QueueServiceClient

    return _storage_service(QueueServiceClient, get_settings().storage.queue_endpoint)


@functools.cache
def queue(name: str) -> QueueClient:
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

    # Queue triggers expect base64 messages (the Functions default, host.json). The policies are
    # set here because get_queue_client does not pass a service client's message policies on.
    client = queue_service().get_queue_client(
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


@functools.cache
def secret_client() -> SecretClient:
    from azure.keyvault.secrets import SecretClient

    s = get_settings()
    host = httpx.URL(s.key_vault_url).host
    return SecretClient(
        vault_url=s.key_vault_url,
        credential=credential(),
        # The challenge names resource https://vault.azure.net; only a real vault host matches it.
        verify_challenge_resource=host.endswith(".vault.azure.net"),
        connection_verify=s.verify,
        connection_timeout=AZURE_CONNECTION_TIMEOUT,
        read_timeout=AZURE_READ_TIMEOUT,
    )


@functools.cache
def http_client() -> httpx.Client:
    """The one httpx client (Graph and the identity platform's metadata)."""
    s = get_settings()
    return httpx.Client(
        timeout=HTTP_TIMEOUT,
        verify=s.verify,
        trust_env=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        headers={"User-Agent": "BookingBridge/0.1"},
    )


@functools.cache
def msal_http_session() -> requests.Session:
    """The `http_client` MSAL uses: MSAL ignores `verify=` when REQUESTS_CA_BUNDLE is set."""
    session = requests.Session()
    session.trust_env = False
    session.verify = get_settings().verify
    return session


def _storage_credential() -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    s = get_settings()
    if s.storage.client_id:
        return ManagedIdentityCredential(client_id=s.storage.client_id)
    return credential()


def reset_clients() -> None:
    """Forget every cached client and the settings (tests switch stacks between modules)."""
    for factory in (
        credential,
        table_service,
        table,
        queue_service,
        queue,
        secret_client,
        http_client,
        msal_http_session,
    ):
        factory.cache_clear()
    get_settings.cache_clear()
