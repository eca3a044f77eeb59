"""The small part of OData query syntax the emulator understands (and refuses the rest of).

`$filter` on events: `singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')`,
`<prop> eq '…'` for subject / iCalUId / transactionId / type / showAs, `isCancelled eq true|false`,
`start/dateTime ge '…'` and `end/dateTime le '…'` (and gt/lt), joined by `and`.
`$expand=singleValueExtendedProperties($filter=id eq '…' [or id eq '…'])`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from .errors import GraphError
from .events import ext_prop_matches
from .model import EventRec
from .timezones import parse_local

_Q = r"'((?:[^']|'')*)'"
_EXT = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+"
    + _Q
    + r"(?:\s+and\s+\1/value\s+eq\s+"
    + _Q
    + r")?\s*\)$",
    re.I,
)
_EQ = re.compile(r"^(subject|iCalUId|transactionId|type|showAs)\s+eq\s+" + _Q + "$", re.I)
_BOOL = re.compile(r"^(isCancelled|isOrganizer|isAllDay)\s+eq\s+(true|false)$", re.I)
_CMP = re.compile(r"^(start|end)/dateTime\s+(ge|gt|le|lt|eq)\s+" + _Q + "$", re.I)

Pred = Callable[[EventRec, dict[str, Any]], bool]


def _unq(s: str) -> str:
    return s.replace("''", "'")


def _split_and(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quote, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if not quote and depth == 0 and text[i : i + 5].lower() == " and ":
            parts.append("".join(cur).strip())
            cur = []
            i += 5
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_filter(text: str) -> list[Pred]:
    preds: list[Pred] = []
    for clause in _split_and(text.strip()):
        m = _EXT.match(clause)
        if m:
            pid, val = _unq(m.group(2)), (_unq(m.group(3)) if m.group(3) is not None else None)
            preds.append(_ext_pred(pid, val))
            continue
        m = _EQ.match(clause)
        if m:
            prop, val = m.group(1), _unq(m.group(2))
            key = {k.lower(): k for k in ("subject", "iCalUId", "transactionId", "type", "showAs")}[
                prop.lower()
            ]
            preds.append(_eq_pred(key, val))
            continue
        m = _BOOL.match(clause)
        if m:
            key = {k.lower(): k for k in ("isCancelled", "isOrganizer", "isAllDay")}[
                m.group(1).lower()
            ]
            want = m.group(2).lower() == "true"
            preds.append(_eq_pred(key, want))
            continue
        m = _CMP.match(clause)
        if m:
            which, op = m.group(1).lower(), m.group(2).lower()
            naive, tz = parse_local(_unq(m.group(3)))
            bound = naive.replace(tzinfo=tz or dt.UTC)
            preds.append(_cmp_pred(which, op, bound))
            continue
        raise GraphError(400, "BadRequest", f"Invalid filter clause: {clause}")
    return preds


def _ext_pred(pid: str, val: str | None) -> Pred:
    def pred(rec: EventRec, _j: dict[str, Any]) -> bool:
        return ext_prop_matches(rec, pid, val)

    return pred


def _eq_pred(key: str, val: object) -> Pred:
    def pred(_rec: EventRec, j: dict[str, Any]) -> bool:
        return bool(j.get(key) == val)

    return pred


def _cmp_pred(which: str, op: str, bound: dt.datetime) -> Pred:
    def pred(_rec: EventRec, j: dict[str, Any]) -> bool:
        return _cmp(j, which, op, bound)

    return pred


def _cmp(j: dict[str, Any], which: str, op: str, bound: dt.datetime) -> bool:
    naive, _tz = parse_local(j[which]["dateTime"])
    # Listing for a filter always serializes in UTC (see routes), so the value is UTC.
    value = naive.replace(tzinfo=dt.UTC)
    return {
        "ge": value >= bound,
        "gt": value > bound,
        "le": value <= bound,
        "lt": value < bound,
        "eq": value == bound,
    }[op]


_EXPAND_EXT = re.compile(r"^singleValueExtendedProperties\s*\((.*)\)$", re.I)
_ID_EQ = re.compile(r"id\s+eq\s+" + _Q, re.I)


def parse_expand(text: str | None) -> list[str] | None:
    """Extended property ids asked for via `$expand`, or None when none are asked for."""
    if not text:
        return None
    ids: list[str] = []
    for part in _split_commas(text):
        m = _EXPAND_EXT.match(part.strip())
        if not m:
            continue  # other navigation properties are not emulated; Graph would expand them
        inner = m.group(1).strip()
        if not inner.lower().startswith("$filter="):
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "Expanding singleValueExtendedProperties requires a $filter on id.",
            )
        found = [_unq(x) for x in _ID_EQ.findall(inner)]
        if not found:
            raise GraphError(400, "BadRequest", f"Invalid $expand: {part}")
        ids.extend(found)
    return ids if ids else None


def _split_commas(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, False
    for ch in text:
        if ch == "'":
            quote = not quote
        if not quote and ch == "(":
            depth += 1
        if not quote and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out
