"""The Graph emulator's knobs: set at start (`GRAPH_EMULATOR_*` env) or by the control API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class GraphConfig:
    """Knobs settable at start (`GRAPH_EMULATOR_*` env) or via `POST /_emulator/graph/config`."""

    # Graph requires https notification URLs (subscription.md: "This URL must make use of the
    # HTTPS protocol"); http on loopback only where a test or the local stack opts in
    # (GRAPH_EMULATOR_ALLOW_HTTP_LOOPBACK=1: devstack/stack.py does, for the local Functions host).
    allow_http_loopback: bool = False
    attendant_delay_ms: tuple[int, int] = (100, 300)
    # "Retries for up to 4 hours" on Graph; here 4 emulated hours map to this many real seconds.
    retry_budget_seconds: float = 20.0
    retry_first_delay_seconds: float = 0.25
    notification_batch_ms: int = 15  # pending notifications to one URL coalesce this long
    delivery_timeout_seconds: float = 3.0  # Graph's HTTP client timeout for notifications
    slow_ms: int = 2900  # a delivery slower than this counts as slow, as Graph counts it
    validation_timeout_seconds: float = 10.0
    reauthorize_before_seconds: float = 15 * 60  # reauthorizationRequired before token expiry
    delta_mode_on_expiry: str = "gone"  # "gone" (410 + Location) | "syncStateNotFound"
    delta_default_page_size: int = 10
    events_default_page_size: int = 10
    # A deleted recurring series in delta: each occurrence's removal ("occurrences"), or only the
    # series master's ("master"). Graph documents neither; clients must handle both.
    delta_series_removal: str = "occurrences"

    def to_json(self) -> dict[str, Any]:
        return {
            "allowHttpLoopback": self.allow_http_loopback,
            "attendantDelayMs": list(self.attendant_delay_ms),
            "retryBudgetSeconds": self.retry_budget_seconds,
            "retryFirstDelaySeconds": self.retry_first_delay_seconds,
            "notificationBatchMs": self.notification_batch_ms,
            "deliveryTimeoutSeconds": self.delivery_timeout_seconds,
            "slowMs": self.slow_ms,
            "validationTimeoutSeconds": self.validation_timeout_seconds,
            "reauthorizeBeforeSeconds": self.reauthorize_before_seconds,
            "deltaModeOnExpiry": self.delta_mode_on_expiry,
            "deltaDefaultPageSize": self.delta_default_page_size,
            "eventsDefaultPageSize": self.events_default_page_size,
            "deltaSeriesRemoval": self.delta_series_removal,
        }

    def update(self, body: dict[str, Any]) -> None:
        names = {
            "allowHttpLoopback": ("allow_http_loopback", bool),
            "retryBudgetSeconds": ("retry_budget_seconds", float),
            "retryFirstDelaySeconds": ("retry_first_delay_seconds", float),
            "notificationBatchMs": ("notification_batch_ms", int),
            "deliveryTimeoutSeconds": ("delivery_timeout_seconds", float),
            "slowMs": ("slow_ms", int),
            "validationTimeoutSeconds": ("validation_timeout_seconds", float),
            "reauthorizeBeforeSeconds": ("reauthorize_before_seconds", float),
            "deltaModeOnExpiry": ("delta_mode_on_expiry", str),
            "deltaDefaultPageSize": ("delta_default_page_size", int),
            "eventsDefaultPageSize": ("events_default_page_size", int),
            "deltaSeriesRemoval": ("delta_series_removal", str),
        }
        for key, value in body.items():
            if key == "attendantDelayMs":
                lo, hi = (value, value) if isinstance(value, int | float) else value
                self.attendant_delay_ms = (int(lo), int(hi))
            elif key in names:
                attr, kind = names[key]
                setattr(self, attr, kind(value))
            else:
                raise ValueError(f"unknown setting {key!r}")
        if self.delta_series_removal not in ("occurrences", "master"):
            raise ValueError("deltaSeriesRemoval must be 'occurrences' or 'master'")
        if self.delta_mode_on_expiry not in ("gone", "syncStateNotFound"):
            raise ValueError("deltaModeOnExpiry must be 'gone' or 'syncStateNotFound'")
