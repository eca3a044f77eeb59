"""Configuration the Functions host reads: host.json, app settings, and keys.

- host.json sits in the app's directory. As in Azure, any value in it can be overridden by an
  app setting (environment variable) named `AzureFunctionsJobHost__<path>` with `__` between
  levels, e.g. `AzureFunctionsJobHost__extensions__queues__visibilityTimeout=00:00:01`; keys match
  case-insensitively. Tests use this to shorten timeouts without a second host.json.
- A settings file is shaped like local.settings.json (`{"Values": {...}}`). Its values go into
  `os.environ` before the app is imported, because the app reads its settings from there in Azure
  too. A variable already set in the environment wins, as with `func start`.
- The keys file is `{"masterKey": "...", "functionKeys": {"default": "..."}}`, created with random
  keys (mode 0600) when missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from devstack.host.schedules import parse_timespan

OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


class HostConfigError(RuntimeError):
    """The app, host.json, settings or keys are not usable; the message says what to fix."""


def _lookup(data: Mapping[str, Any], *path: str) -> Any:
    """Case-insensitive nested lookup (host.json keys are case-insensitive in Azure)."""
    current: Any = data
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = next((v for k, v in current.items() if k.lower() == key.lower()), None)
    return current


def _apply_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.lower().startswith(OVERRIDE_PREFIX.lower()):
            continue
        path = name[len(OVERRIDE_PREFIX) :].split("__")
        node = data
        for key in path[:-1]:
            existing = next((k for k in node if k.lower() == key.lower()), key)
            child = node.get(existing)
            if not isinstance(child, dict):
                child = node[existing] = {}
            node = child
        leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
        node[leaf] = value


def _timespan(value: Any, default: timedelta) -> timedelta:
    if value is None:
        return default
    if isinstance(value, int | float):  # old host.json schema: milliseconds
        return timedelta(milliseconds=value)
    try:
        return parse_timespan(str(value))
    except ValueError as exc:
        raise HostConfigError(f"host.json: {exc}") from exc


def _integer(value: Any, default: int, name: str, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise HostConfigError(f"host.json: {name} must be an integer, got {value!r}") from exc
    if not low <= number <= high:
        raise HostConfigError(f"host.json: {name} must be within {low}-{high}, got {number}")
    return number


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` with Azure's defaults, except where noted."""

    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    batch_size: int = 16
    new_batch_threshold: int = 8
    # Azure's default is one minute; a local host that idles for a minute makes tests slow and
    # demos confusing, so ours defaults to one second (host.json can still set it).
    max_polling_interval: timedelta = timedelta(seconds=1)
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    raw: Mapping[str, Any] = field(default_factory=dict)


def load_host_config(app_dir: Path, environ: Mapping[str, str] | None = None) -> HostConfig:
    """Read `<app_dir>/host.json` (optional) and apply `AzureFunctionsJobHost__*` overrides."""
    environ = os.environ if environ is None else environ
    path = app_dir / "host.json"
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"{path}: not valid JSON: {exc}") from exc
    _apply_overrides(data, environ)

    prefix = _lookup(data, "extensions", "http", "routePrefix")
    queues = _lookup(data, "extensions", "queues") or {}
    batch_size = _integer(_lookup(queues, "batchSize"), 16, "batchSize", 1, 32)
    encoding = str(_lookup(queues, "messageEncoding") or "base64").lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(f"host.json: messageEncoding must be base64 or none, not {encoding}")
    options = QueueOptions(
        max_dequeue_count=_integer(
            _lookup(queues, "maxDequeueCount"), 5, "maxDequeueCount", 1, 10_000
        ),
        visibility_timeout=_timespan(_lookup(queues, "visibilityTimeout"), timedelta(0)),
        batch_size=batch_size,
        new_batch_threshold=_integer(
            _lookup(queues, "newBatchThreshold"), batch_size // 2, "newBatchThreshold", 0, 1000
        ),
        max_polling_interval=_timespan(
            _lookup(queues, "maxPollingInterval"), QueueOptions.max_polling_interval
        ),
        message_encoding=encoding,
    )
    return HostConfig(
        route_prefix=("api" if prefix is None else str(prefix)).strip("/"),
        queues=options,
        raw=data,
    )


def load_settings_file(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json-shaped file, all as strings."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HostConfigError(f"settings file {path}: {exc}") from exc
    values = data.get("Values", {}) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise HostConfigError(f'settings file {path}: expected {{"Values": {{...}}}}')
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply_settings(values: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Put settings into the environment; returns the names skipped because already set."""
    skipped = [name for name in values if name in environ]
    for name, value in values.items():
        environ.setdefault(name, value)
    return skipped


_SETTING_EXPR = re.compile(r"%([^%\s]+)%")


def resolve_setting_expressions(
    text: str, what: str, environ: Mapping[str, str] | None = None
) -> str:
    """Replace `%NAME%` with app setting NAME, failing loudly when it is not set (as indexing does)."""
    environ = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise HostConfigError(f"{what}: app setting {name} (from %{name}%) is not set")
        return environ[name]

    return _SETTING_EXPR.sub(replace, text)


@dataclass(frozen=True)
class HostKeys:
    master_key: str
    function_keys: Mapping[str, str]

    @classmethod
    def generate(cls) -> HostKeys:
        return cls(secrets.token_urlsafe(32), {"default": secrets.token_urlsafe(32)})

    @classmethod
    def load_or_create(cls, path: Path) -> HostKeys:
        """Read the keys file, or create it with fresh random keys readable only by us."""
        if not path.exists():
            keys = cls.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"masterKey": keys.master_key, "functionKeys": dict(keys.function_keys)}
            try:
                # O_EXCL: when two hosts start at once, one creates and the other reads.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(payload, handle, indent=2)
                return keys
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            master = data["masterKey"]
            function_keys = data.get("functionKeys") or {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HostConfigError(
                f'keys file {path}: expected {{"masterKey": ..., "functionKeys": {{...}}}} ({exc})'
            ) from exc
        if not isinstance(master, str) or not master or not isinstance(function_keys, dict):
            raise HostConfigError(f"keys file {path}: masterKey must be a non-empty string")
        return cls(master, {str(k): str(v) for k, v in function_keys.items() if v})
