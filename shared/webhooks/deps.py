"""The outgoing webhooks' collaborators (built in shared/wiring.py) and their configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.core.settings import Settings
from shared.webhooks.ssrf import Resolver
from shared.webhooks.store import SigningSecrets, WebhookStore

if TYPE_CHECKING:
    import httpx

TIMEOUT_S = 10.0  # per attempt
RESPONSE_MAX_BYTES = 64 * 1024  # what we read of a receiver's answer, at most


@dataclass(frozen=True)
class WebhookConfig:
    allow_loopback: bool
    retry_base_s: int
    retry_max_s: int
    retry_window_s: int
    disable_after_s: int
    secret_grace_s: int

    @staticmethod
    def of(settings: Settings) -> WebhookConfig:
        return WebhookConfig(
            allow_loopback=settings.webhooks_allow_loopback,
            retry_base_s=settings.webhook_retry_base_seconds,
            retry_max_s=settings.webhook_retry_max_seconds,
            retry_window_s=settings.webhook_retry_window_seconds,
            disable_after_s=settings.webhook_disable_after_seconds,
            secret_grace_s=settings.webhook_secret_grace_seconds,
        )


@dataclass(frozen=True)
class WebhookDeps:
    store: WebhookStore
    secrets: SigningSecrets
    http: httpx.Client  # no redirects, 10 s timeout, no proxies from the environment
    enqueue: Callable[[str, float], None]  # a delivery message, visible after n seconds
    resolve: Resolver
    clock: Callable[[], datetime]
    config: WebhookConfig
    # Whether the change an event reports was committed (model.Event.commit).
    committed: Callable[[Mapping[str, Any]], bool] = field(default=lambda check: True)
