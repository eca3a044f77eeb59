"""Reading untrusted JSON: the one place every request body, webhook body and opaque token is parsed.

Python's `json` parser recurses once per nesting level, so about a thousand `[` (2 KB) raise
`RecursionError`, which no `except ValueError` catches: a 500 from a tiny request. So size and
nesting depth are checked *before* parsing, on the raw text, and a failure is a 400 naming the
field (413 for size). Nothing legitimate comes close to the bounds: our deepest body (a booking) is
4 levels, Graph's change notifications about 5.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.core.errors import FieldError, PayloadTooLarge, ValidationFailed

MAX_DEPTH = 32
MAX_BYTES = 1024 * 1024  # 1 MiB: any single-object body
IMPORT_MAX_BYTES = 8 * 1024 * 1024  # users:import, JSON or CSV: 20,000 rows of ~100 bytes, and room
# Strings first (brackets inside them do not nest); an unterminated string ends the text.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # "unrolled": no per-byte branch
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")  # one pass removes exactly one level of nesting


def too_deep(data: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether `data` opens more than `max_depth` arrays/objects inside each other.

    In C-speed passes: strings dropped, everything but brackets dropped, then each pass removes
    the innermost pairs, so a body `d` levels deep takes `d` passes (real bodies: 3 to 6).
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # the common case: not even that many brackets in all
    rest = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        shorter = _INNERMOST.sub(b"", rest)
        if len(shorter) == len(rest):
            break  # unbalanced brackets only: invalid JSON, which json.loads names
        rest = shorter
    # What is left is unclosed or more than max_depth deep.
    return rest.count(b"[") + rest.count(b"{") > max_depth or (
        len(rest) > 0 and _INNERMOST.search(rest) is not None
    )


def check_size(raw: bytes, max_bytes: int, field: str = "body") -> None:
    """413 if `raw` is over `max_bytes` (also for bodies that are not JSON, e.g. CSV imports)."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"The {field} is larger than {max_bytes} bytes", reason="payload_too_large"
        )


def parse_json(
    data: bytes | str | None,
    *,
    field: str = "body",
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    empty: Any = None,
) -> Any:
    """The JSON value of `data`; `empty` for no data. 413 over `max_bytes`, 400 naming `field`
    for invalid JSON or more than `max_depth` levels of nesting."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else (data or b"")
    if not raw:
        return empty
    check_size(raw, max_bytes, field)
    if too_deep(raw, max_depth):
        raise ValidationFailed([FieldError(field, f"must not nest more than {max_depth} levels")])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a last guard only; the depth check above should have refused the text.
        raise ValidationFailed([FieldError(field, "must be valid JSON")]) from exc
