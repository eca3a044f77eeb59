"""Route templates as the Functions host (ASP.NET Core routing) reads them.

A template is segments separated by `/`. A segment is a literal (matched case-insensitively), a
parameter `{name}`, or a mix such as `{name}.{ext}` or `v{version:int}`. Parameters take
constraints `{id:int}`, `{id:min(1):max(9)}` (all of int, long, bool, datetime, decimal, double,
float, guid, alpha, length(n), length(a,b), minlength(n), maxlength(n), min(n), max(n),
range(a,b), regex(expr), required); a whole last segment may be optional `{id?}` or have a default
`{page=1}`; and the last segment may be a catch-all `{*rest}` that takes the rest of the path,
slashes included (possibly nothing). Braces inside a regex constraint are doubled, as in ASP.NET.

When several templates match a path, the most specific wins, by ASP.NET's inbound precedence:
per segment literal < mixed < constrained parameter < parameter < catch-all.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

Constraint = Callable[[str], bool]


class RouteTemplateError(ValueError):
    """A route template that the Functions host would refuse to index."""


def _is_int(text: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", text):
        return False
    return -(1 << (bits - 1)) <= int(text) < 1 << (bits - 1)


def _as_decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _int_args(name: str, args: list[str], count: int) -> list[int]:
    if len(args) != count or not all(re.fullmatch(r"-?\d+", a.strip()) for a in args):
        raise RouteTemplateError(f"constraint {name} needs {count} integer argument(s)")
    return [int(a) for a in args]


def _length_between(low: int, high: int) -> Constraint:
    return lambda value: low <= len(value) <= high


def _int_between(low: float, high: float) -> Constraint:
    return lambda value: _is_int(value, 64) and low <= int(value) <= high


def _make_constraint(spec: str) -> Constraint:
    """Build one constraint from its text, e.g. `int`, `length(2,5)`, `regex(^a+$)`."""
    name, paren, rest = spec.partition("(")
    name = name.strip().lower()
    if paren:
        if not rest.endswith(")"):
            raise RouteTemplateError(f"constraint {spec!r} is missing ')'")
        inner = rest[:-1]
        if name == "regex":
            pattern = re.compile(inner, re.IGNORECASE)  # ASP.NET regex constraints ignore case
            return lambda value: pattern.search(value) is not None
        args = inner.split(",")
        if name == "length":
            if len(args) == 1:
                (n,) = _int_args(name, args, 1)
                return _length_between(n, n)
            low, high = _int_args(name, args, 2)
            return _length_between(low, high)
        if name == "minlength":
            (n,) = _int_args(name, args, 1)
            return _length_between(n, 2**31)
        if name == "maxlength":
            (n,) = _int_args(name, args, 1)
            return _length_between(0, n)
        if name == "min":
            (n,) = _int_args(name, args, 1)
            return _int_between(n, float("inf"))
        if name == "max":
            (n,) = _int_args(name, args, 1)
            return _int_between(float("-inf"), n)
        if name == "range":
            low, high = _int_args(name, args, 2)
            return _int_between(low, high)
        raise RouteTemplateError(f"unknown route constraint {spec!r}")
    simple: dict[str, Constraint] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "datetime": _is_datetime,
        "decimal": lambda v: _as_decimal(v) is not None,
        "double": _is_float,
        "float": _is_float,
        "guid": _is_guid,
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "required": lambda v: v != "",
    }
    if name not in simple:
        raise RouteTemplateError(f"unknown route constraint {spec!r}")
    return simple[name]


@dataclass(frozen=True)
class Parameter:
    name: str
    constraints: tuple[Constraint, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.constraints)


@dataclass(frozen=True)
class Segment:
    """One path segment: literal text, or a regex over literal parts and parameters."""

    literal: str | None = None
    pattern: re.Pattern[str] | None = None
    parameters: tuple[Parameter, ...] = ()

    @property
    def single(self) -> Parameter | None:
        """The parameter, when the segment is exactly one parameter and nothing else."""
        if self.literal is None and len(self.parameters) == 1 and self.pattern is None:
            return self.parameters[0]
        return None

    @property
    def precedence(self) -> int:
        # ASP.NET Core RoutePrecedence.ComputeInbound digits (lower wins).
        if self.literal is not None:
            return 1
        if self.pattern is not None:
            return 2
        param = self.parameters[0]
        if param.catch_all:
            return 5
        return 3 if param.constraints else 4


def _split_segment(text: str) -> list[str | tuple[str]]:
    """Split a segment into literal strings and `(parameter-body,)` tuples; `{{`/`}}` escape."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(ch)
            i += 2
        elif ch == "{":
            body: list[str] = []
            i += 1
            while True:
                if i >= len(text):
                    raise RouteTemplateError(f"unclosed '{{' in segment {text!r}")
                if text.startswith("}}", i) or text.startswith("{{", i):
                    body.append(text[i])
                    i += 2
                elif text[i] == "}":
                    i += 1
                    break
                else:
                    body.append(text[i])
                    i += 1
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(("".join(body),))
        elif ch == "}":
            raise RouteTemplateError(f"unmatched '}}' in segment {text!r}")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _split_constraints(text: str) -> list[str]:
    """Split `int:min(1):regex(a:b)` on colons that are not inside parentheses."""
    pieces: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == ":" and depth == 0:
            pieces.append("".join(current))
            current = []
            continue
        depth += ch == "("
        depth -= ch == ")"
        current.append(ch)
    pieces.append("".join(current))
    return pieces


def _parse_parameter(body: str) -> Parameter:
    body = body.strip()
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    optional = False
    # The name is everything up to the first ':', '=' or trailing '?'.
    match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(.*)$", body, re.DOTALL)
    if match is None:
        raise RouteTemplateError(f"bad route parameter {{{body}}}")
    name, rest = match.groups()
    # `=default` comes after the constraints; an '=' inside a constraint's parentheses is not one.
    head = rest
    depth = 0
    for i, ch in enumerate(rest):
        depth += (ch == "(") - (ch == ")")
        if ch == "=" and depth == 0:
            head, default, optional = rest[:i], rest[i + 1 :], True
            break
    if head.endswith("?"):
        optional = True
        head = head[:-1]
    constraints: tuple[Constraint, ...] = ()
    if head:
        if not head.startswith(":"):
            raise RouteTemplateError(f"bad route parameter {{{body}}}")
        constraints = tuple(_make_constraint(c) for c in _split_constraints(head[1:]) if c)
    if catch_all and optional:
        raise RouteTemplateError(f"a catch-all parameter cannot be optional: {{{body}}}")
    return Parameter(name, constraints, optional, default, catch_all)


def _parse_segment(text: str) -> Segment:
    parts = _split_segment(text)
    if not parts:
        raise RouteTemplateError("empty segment (two slashes in a row)")
    if len(parts) == 1 and isinstance(parts[0], str):
        return Segment(literal=parts[0])
    if len(parts) == 1:
        return Segment(parameters=(_parse_parameter(parts[0][0]),))
    regex: list[str] = []
    params: list[Parameter] = []
    previous_was_param = False
    for part in parts:
        if isinstance(part, str):
            regex.append(re.escape(part))
            previous_was_param = False
            continue
        if previous_was_param:
            raise RouteTemplateError(f"two parameters need a literal between them in {text!r}")
        param = _parse_parameter(part[0])
        if param.catch_all or param.optional:
            raise RouteTemplateError(
                f"optional and catch-all parameters need their own segment: {text!r}"
            )
        params.append(param)
        # Greedy groups backtrack to the rightmost split, as ASP.NET matches complex segments.
        regex.append("(.+)")
        previous_was_param = True
    return Segment(
        pattern=re.compile("".join(regex), re.IGNORECASE | re.DOTALL), parameters=tuple(params)
    )


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template; `match` gives the route parameters or None."""

    template: str
    segments: tuple[Segment, ...]
    precedence: tuple[int, ...] = field(compare=False)

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip()
        text = text.removeprefix("~").removeprefix("/")
        raw_segments = text.split("/") if text else []
        segments = tuple(_parse_segment(s) for s in raw_segments)
        names: set[str] = set()
        for index, segment in enumerate(segments):
            for param in segment.parameters:
                if param.name.lower() in names:
                    raise RouteTemplateError(f"{template!r}: parameter {param.name} appears twice")
                names.add(param.name.lower())
                last = index == len(segments) - 1
                if (param.catch_all or param.optional) and not last:
                    raise RouteTemplateError(
                        f"{template!r}: optional and catch-all parameters must be the last segment"
                    )
        return cls(template, segments, tuple(s.precedence for s in segments))

    def match(self, path: str) -> dict[str, str] | None:
        """Match a path (below the route prefix, percent-encoded, no query) or return None."""
        return self.match_segments(split_path(path))

    def match_segments(self, path: Sequence[str]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            single = segment.single
            if single is not None and single.catch_all:
                rest = "/".join(path[index:])
                if rest and not single.accepts(rest):
                    return None
                if rest:
                    values[single.name] = rest
                return values
            if index >= len(path):
                # Only a trailing optional parameter may be missing from the path.
                if single is not None and single.optional and index == len(path):
                    if single.default is not None:
                        values[single.name] = single.default
                    return values
                return None
            actual = path[index]
            if segment.literal is not None:
                if actual.lower() != segment.literal.lower():
                    return None
            elif single is not None:
                if actual == "" or not single.accepts(actual):
                    return None
                values[single.name] = actual
            else:
                assert segment.pattern is not None
                found = segment.pattern.fullmatch(actual)
                if found is None:
                    return None
                for param, value in zip(segment.parameters, found.groups(), strict=True):
                    if not param.accepts(value):
                        return None
                    values[param.name] = value
        return values if len(path) == len(self.segments) else None


def split_path(path: str) -> list[str]:
    """Split a percent-encoded path into decoded segments.

    Splitting before decoding keeps an encoded slash (%2F) inside its segment. One trailing slash
    is ignored, as ASP.NET routing does.
    """
    text = path.removeprefix("/")
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        return []
    return [unquote(part) for part in text.split("/")]
