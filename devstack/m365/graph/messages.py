"""One Graph request and its reply as the router and its parts see them (batch items included)."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError
from .timezones import prefer_timezone

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please "
                "ensure Content-Type header is set and payload is of valid JSON "
                "format.",
            ) from None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def parse_query(raw: str) -> dict[str, str]:
    """Form-decoding, as Graph does: an unencoded `+` becomes a space (and breaks offsets)."""
    out: dict[str, str] = {}
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[urllib.parse.unquote_plus(k)] = urllib.parse.unquote_plus(v)
    return out


@dataclass
class Prefs:
    tz: str | None
    immutable: bool
    max_page: int | None
    body_type: str | None = None  # Prefer: outlook.body-content-type="text" | "html"

    def applied(self) -> dict[str, str]:
        """Preference-Applied for the preferences honoured (event-get.md, Request headers)."""
        done = []
        if self.tz:
            done.append(f'outlook.timezone="{self.tz}"')
        if self.body_type:
            done.append(f'outlook.body-content-type="{self.body_type}"')
        return {"Preference-Applied": ", ".join(done)} if done else {}


_MAXPAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.I)
_BODY_TYPE = re.compile(r'outlook\.body-content-type\s*=\s*"?(text|html)"?', re.I)


def prefs(headers: dict[str, str]) -> Prefs:
    prefer = headers.get("prefer", "")
    m = _MAXPAGE.search(prefer)
    b = _BODY_TYPE.search(prefer)
    return Prefs(
        prefer_timezone(prefer),
        bool(re.search(r'IdType\s*=\s*"?ImmutableId"?', prefer, re.I)),
        int(m.group(1)) if m else None,
        b.group(1).lower() if b else None,
    )


Run = Callable[[], Awaitable[Reply]]
