"""Lists of the API: one envelope, `top`, and keyset cursors (docs/API.md "Lists and paging").

Every collection route answers `{"value": [...], "nextLink": <URL> | null}`; a service returns a
`Listed` (its items and the opaque token of the next page, if any) and functions/http.py turns it
into that envelope. Two kinds of token exist, both opaque to callers and validated on the way in
(400 naming `continuationToken`):

- Table Storage's own (shared/storage/tablestore.py `query_page`), for a list read straight from one
  partition in key order (users);
- a keyset cursor (`encode_cursor`), the sort key of the last item returned, for a list that is
  merged or sorted by us (bookings: platform bookings and Outlook busy blocks by start; resources,
  audit). The next page is "every item whose key is greater", so an item is neither lost nor
  repeated across pages, also when many share a start time, as long as the key is unique.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.core.errors import FieldError, ValidationFailed

T = TypeVar("T")

TOP_DEFAULT = 100
TOP_MAX = 1000
TOKEN_FIELD = "continuationToken"  # noqa: S105 (a parameter name, not a secret)
_CURSOR_PREFIX = "k1."  # never the start of a Table Storage token of ours (base64 of "{")
_CURSOR_MAX = 2048  # characters of the token: a few keys of at most ~500 characters each
_KEY_PART_MAX = 512


@dataclass(frozen=True)
class Listed(Generic[T]):
    """One page of a list: its items and the next page's token (None on the last page)."""

    value: Sequence[T]
    continuation_token: str | None = None


def parse_top(
    raw: str | None, *, default: int = TOP_DEFAULT, maximum: int = TOP_MAX, field: str = "top"
) -> int:
    """The page size asked for: absent → `default`, else an integer 1..`maximum` (400 naming it)."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationFailed([FieldError(field, f"must be an integer from 1 to {maximum}")])
    return int(raw)


def top_of(
    params: Mapping[str, str],
    *,
    default: int = TOP_DEFAULT,
    maximum: int = TOP_MAX,
    alias: str | None = None,
) -> int:
    """`top` of a query; `alias` (an older name, e.g. `limit`) is read when `top` is absent, and
    naming both is a 400 (which one would win is a guess)."""
    if alias and params.get(alias) and params.get("top"):
        raise ValidationFailed([FieldError(alias, "cannot be combined with top")])
    field = alias if alias and params.get(alias) else "top"
    return parse_top(params.get(field), default=default, maximum=maximum, field=field)


def encode_cursor(key: Sequence[str]) -> str:
    """The opaque token of "after this sort key"."""
    raw = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False).encode()
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str | None, arity: int) -> tuple[str, ...] | None:
    """The sort key a token of `encode_cursor` holds (None without a token); 400 naming
    `continuationToken` for anything we did not issue for a list with keys of `arity` parts."""
    if not token:
        return None
    invalid = ValidationFailed([FieldError(TOKEN_FIELD, "is not a valid continuation token")])
    if len(token) > _CURSOR_MAX or not token.startswith(_CURSOR_PREFIX):
        raise invalid
    body = token[len(_CURSOR_PREFIX) :]
    try:
        key = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise invalid from exc
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(isinstance(p, str) and len(p) <= _KEY_PART_MAX for p in key)
    ):
        raise invalid
    return tuple(key)


def keyset_page(
    items: Sequence[T],
    key: Callable[[T], tuple[str, ...]],
    *,
    arity: int,
    top: int,
    token: str | None,
) -> Listed[T]:
    """Page `top` of `items` in `key` order (keys of `arity` strings, unique per item) after the
    token's key.

    For lists we read whole and sort (bounded by their query: a 31-day window, one building's
    resources): the cursor is the last key shown, so items added or removed between two pages never
    shift the others (no offset to go stale).
    """
    after = decode_cursor(token, arity)
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [i for i in ordered if key(i) > after]
    page = ordered[:top]
    more = len(ordered) > top
    return Listed(page, encode_cursor(key(page[-1])) if more else None)
