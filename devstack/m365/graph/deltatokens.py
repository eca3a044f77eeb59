"""Delta tokens: what a client saw at the end of each round, kept server-side behind opaque tokens.

Its own module (not in views) because the Graph state owns one `DeltaStore` and views reads the
state: keeping the token store apart keeps that an import in one direction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_TOKENS = 50_000


@dataclass
class Snapshot:
    """What a client saw at the end of a round: item key → (changeKey, rest id, immutable id)."""

    mailbox: tuple[str, str]
    calendar_ids: frozenset[str]
    start: dt.datetime
    end: dt.datetime
    path: str  # for the 410 Location header
    items: dict[str, tuple[str, str, str]]
    seq: int


@dataclass
class Round:
    snapshot: Snapshot  # the snapshot the round ends with (becomes the deltaLink)
    entries: list[tuple[str, Any]]  # ("item", (event key, occ)) | ("removed", (rest, immutable))
    page_size: int


@dataclass
class DeltaStore:
    snapshots: OrderedDict[str, Snapshot] = field(default_factory=OrderedDict)
    pages: OrderedDict[str, tuple[Round, int]] = field(default_factory=OrderedDict)
    expired: dict[str, str] = field(default_factory=dict)  # token → mode

    def _put(self, table: OrderedDict[str, Any], value: Any) -> str:
        token = secrets.token_urlsafe(24)
        table[token] = value
        if len(table) > MAX_TOKENS:
            table.popitem(last=False)
        return token

    def expire(self, mode: str, mailbox: tuple[str, str] | None = None) -> int:
        n = 0
        tables: tuple[OrderedDict[str, Any], ...] = (self.snapshots, self.pages)
        for table in tables:
            items: list[tuple[str, Any]] = list(table.items())
            for token, value in items:
                snap: Snapshot = value if isinstance(value, Snapshot) else value[0].snapshot
                if mailbox is None or snap.mailbox == mailbox:
                    self.expired[token] = mode
                    n += 1
        return n
