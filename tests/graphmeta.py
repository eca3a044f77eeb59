"""Validate JSON payloads against Microsoft Graph v1.0's published metadata (CSDL).

The test suite and the Graph emulator use this to check that what they send or accept has the
shape real Graph uses, instead of trusting hand-written fixtures. The ground truth is Microsoft's
CSDL, shipped gzipped in ``tests/data/`` (see ``tests/data/README.md`` for its source): the whole
file, so any type can be validated, and nothing outside the repository is read.

Public API (names are ``microsoft.graph.event`` style; ``event``, ``graph.event`` and
``#microsoft.graph.event`` are accepted too)::

    validate(payload, "event")                          # -> list of problems, [] = valid
    validate(patch_body, "event", partial=True)         # request bodies (POST/PATCH)
    validate_collection(response, "event")              # {"value": [...], "@odata.nextLink": ...}
    validate_action_parameters(body, "getSchedule", "calendar")
    type_names(), has_type(name), property_type(type_name, prop)

Each problem reads ``path: message``, the path being JSON-pointer-like (``start.dateTime``,
``attendees[1].type``; ``(root)`` for the payload itself).

Deliberate deviations from a literal reading of the CSDL, each because real Graph differs:

* ``OpenType`` is honoured (undeclared properties allowed), except for Outlook item types
  (``outlookItem`` and everything derived from it: event, message, contact, post). The CSDL marks
  them open, but Exchange, which serves them, rejects undeclared properties with "The property 'x'
  does not exist on type 'Microsoft.OutlookServices.Event'. Make sure to only use property names
  that are defined by the type or mark the type as open type." (e.g.
  microsoftgraph/msgraph-sdk-javascript#212). Treating them as closed is what catches typos.
* Request bodies (``partial=True`` and action parameters) match enum members and action parameter
  names case-insensitively, as Graph's request reader does: the CSDL declares getSchedule's
  parameters as ``Schedules``/``StartTime`` while the documented request uses ``schedules``/
  ``startTime``, and documented event requests send ``"contentType": "HTML"`` and
  ``"type": "Required"``. Responses must use the declared spelling, which is what Graph returns.
* ``@odata.type`` is resolved case-insensitively: change notifications carry
  ``"@odata.type": "#Microsoft.Graph.Event"``.
* ``Nullable="false"`` is checked on values that are present; absent properties are not errors,
  because ``$select`` responses and lifecycle notifications omit non-nullable properties. The only
  required properties are entity keys (``id``), and only when ``partial`` is false.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import gzip
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

__all__ = [
    "METADATA_PATH",
    "METADATA_SHA256",
    "has_type",
    "property_type",
    "type_names",
    "validate",
    "validate_action_parameters",
    "validate_collection",
]

METADATA_PATH = Path(__file__).resolve().parent / "data" / "graph-v1.0-metadata.xml.gz"
# sha256 of the uncompressed CSDL, as published (clean_v10_metadata/cleanMetadata.xml at
# microsoftgraph/msgraph-metadata@f54f11b60956ea7b185ca0447b2b80805836ec7b); a test checks it so
# an accidental edit or re-download of the data file cannot go unnoticed.
METADATA_SHA256 = "79b90dfb12d57adecfa110069397ed7003719e713840a9f885ae946fd9ee6e6b"

DEFAULT_NAMESPACE = "microsoft.graph"
_EDM_NS = "{http://docs.oasis-open.org/odata/ns/edm}"
# Exchange serves these (and their derived types) as closed types despite OpenType="true".
_CLOSED_IN_PRACTICE_ROOTS = ("microsoft.graph.outlookItem",)
# How many enum members / parameter names a message lists before eliding the rest.
_MAX_LISTED = 12


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeRef:
    """A reference to a type as a property or parameter declares it."""

    name: str  # fully qualified: "Edm.String", "microsoft.graph.dateTimeTimeZone"
    collection: bool
    nullable: bool

    def __str__(self) -> str:
        return f"Collection({self.name})" if self.collection else self.name


@dataclass(frozen=True)
class Property:
    name: str
    type: TypeRef
    navigation: bool


@dataclass(frozen=True)
class StructuredType:
    name: str  # fully qualified
    kind: Literal["entity", "complex"]
    base: str | None
    abstract: bool
    open: bool
    properties: Mapping[str, Property]  # declared on this type only; see _Model.all_properties
    keys: tuple[str, ...]  # declared on this type only (the Key element)


@dataclass(frozen=True)
class EnumType:
    name: str
    members: tuple[str, ...]
    flags: bool


@dataclass(frozen=True)
class Action:
    name: str  # fully qualified
    binding: TypeRef | None  # None for unbound actions
    parameters: tuple[tuple[str, TypeRef], ...]  # without the binding parameter


class _Model:
    def __init__(
        self,
        structured: dict[str, StructuredType],
        enums: dict[str, EnumType],
        actions: dict[str, list[Action]],
    ) -> None:
        self.structured = structured
        self.enums = enums
        self.actions = actions  # keyed by casefolded short and qualified name
        self._folded = {n.casefold(): n for n in (*structured, *enums)}
        self._props: dict[str, dict[str, Property]] = {}
        self._keys: dict[str, tuple[str, ...]] = {}
        self.aliases: dict[str, str] = {}

    def qualify(self, name: str) -> str:
        """Replace a schema alias (``graph.event``) by its namespace (``microsoft.graph.event``)."""
        head, dot, tail = name.partition(".")
        if dot and head in self.aliases:
            return f"{self.aliases[head]}.{tail}"
        return name

    def resolve(self, name: str) -> str | None:
        """Canonical qualified name of a named (structured or enum) type, or None."""
        name = self.qualify(name.strip().removeprefix("#"))
        for candidate in (name, f"{DEFAULT_NAMESPACE}.{name}"):
            if candidate in self.structured or candidate in self.enums:
                return candidate
        # Case-insensitive fallback: Graph itself writes "#Microsoft.Graph.Event" in
        # notifications. No two CSDL type names differ only in case, so this is unambiguous.
        for candidate in (name, f"{DEFAULT_NAMESPACE}.{name}"):
            found = self._folded.get(self.qualify(candidate).casefold())
            if found is not None:
                return found
        return None

    def require_structured(self, type_name: str) -> StructuredType:
        resolved = self.resolve(type_name)
        if resolved is None or resolved not in self.structured:
            raise ValueError(f"{type_name!r} is not an entity or complex type of Graph v1.0")
        return self.structured[resolved]

    def ancestry(self, name: str) -> Iterable[StructuredType]:
        """The type itself, then its base types up to the root."""
        current: str | None = name
        while current is not None and current in self.structured:
            st = self.structured[current]
            yield st
            current = st.base

    def is_subtype(self, name: str, base: str) -> bool:
        return any(st.name == base for st in self.ancestry(name))

    def all_properties(self, name: str) -> dict[str, Property]:
        cached = self._props.get(name)
        if cached is None:
            cached = {}
            for st in reversed(list(self.ancestry(name))):
                cached.update(st.properties)
            self._props[name] = cached
        return cached

    def keys(self, name: str) -> tuple[str, ...]:
        cached = self._keys.get(name)
        if cached is None:
            # A derived entity type inherits its key; the nearest declaration wins.
            cached = next((st.keys for st in self.ancestry(name) if st.keys), ())
            self._keys[name] = cached
        return cached

    def is_open(self, name: str) -> bool:
        st = self.structured[name]
        if not st.open:
            return False
        return not any(self.is_subtype(name, root) for root in _CLOSED_IN_PRACTICE_ROOTS)


def _parse_type(raw: str, nullable_attr: str | None, qualify: Callable[[str], str]) -> TypeRef:
    collection = raw.startswith("Collection(") and raw.endswith(")")
    inner = raw[len("Collection(") : -1] if collection else raw
    # CSDL: Nullable defaults to true; on a collection it applies to the items (and we also use
    # it for the collection value itself, see _Validator.value).
    return TypeRef(qualify(inner), collection, nullable_attr != "false")


def _build_model(xml: bytes) -> _Model:
    root = ET.fromstring(xml)  # noqa: S314 - Microsoft's published CSDL shipped in the repo, not untrusted input
    schemas = list(root.iter(f"{_EDM_NS}Schema"))
    aliases = {s.get("Alias", ""): s.get("Namespace", "") for s in schemas if s.get("Alias")}

    def qualify(name: str) -> str:
        head, dot, tail = name.partition(".")
        return f"{aliases[head]}.{tail}" if dot and head in aliases else name

    structured: dict[str, StructuredType] = {}
    enums: dict[str, EnumType] = {}
    actions: dict[str, list[Action]] = {}
    for schema in schemas:
        namespace = schema.get("Namespace", "")
        for el in schema:
            tag = el.tag.removeprefix(_EDM_NS)
            if tag in ("EntityType", "ComplexType"):
                name = f"{namespace}.{el.get('Name')}"
                props: dict[str, Property] = {}
                for child in el:
                    child_tag = child.tag.removeprefix(_EDM_NS)
                    if child_tag in ("Property", "NavigationProperty"):
                        prop_name = child.get("Name", "")
                        ref = _parse_type(child.get("Type", ""), child.get("Nullable"), qualify)
                        props[prop_name] = Property(
                            prop_name, ref, child_tag == "NavigationProperty"
                        )
                key_el = el.find(f"{_EDM_NS}Key")
                keys = (
                    tuple(r.get("Name", "") for r in key_el.iter(f"{_EDM_NS}PropertyRef"))
                    if key_el is not None
                    else ()
                )
                base = el.get("BaseType")
                structured[name] = StructuredType(
                    name=name,
                    kind="entity" if tag == "EntityType" else "complex",
                    base=qualify(base) if base else None,
                    abstract=el.get("Abstract") == "true",
                    open=el.get("OpenType") == "true",
                    properties=props,
                    keys=keys,
                )
            elif tag == "EnumType":
                name = f"{namespace}.{el.get('Name')}"
                members = tuple(m.get("Name", "") for m in el.iter(f"{_EDM_NS}Member"))
                enums[name] = EnumType(name, members, el.get("IsFlags") == "true")
            elif tag == "Action":
                name = f"{namespace}.{el.get('Name')}"
                params = [
                    (p.get("Name", ""), _parse_type(p.get("Type", ""), p.get("Nullable"), qualify))
                    for p in el.iter(f"{_EDM_NS}Parameter")
                ]
                # OData: the first parameter of a bound action is the binding parameter, whatever
                # its name (Graph uses bindingParameter, bindparameter, this, bookingBusiness…).
                bound = el.get("IsBound") == "true" and bool(params)
                action = Action(
                    name=name,
                    binding=params[0][1] if bound else None,
                    parameters=tuple(params[1:] if bound else params),
                )
                for key in (name.casefold(), name.rpartition(".")[2].casefold()):
                    actions.setdefault(key, []).append(action)

    model = _Model(structured, enums, actions)
    model.aliases = aliases
    return model


@functools.cache
def _model() -> _Model:
    """The parsed metadata, built once per process (~0.2 s for the whole of Graph v1.0)."""
    return _build_model(gzip.decompress(METADATA_PATH.read_bytes()))


# --------------------------------------------------------------------------------------------
# Primitive checks
# --------------------------------------------------------------------------------------------

_INT_RANGES = {
    "Edm.Byte": (0, 2**8 - 1),
    "Edm.SByte": (-(2**7), 2**7 - 1),
    "Edm.Int16": (-(2**15), 2**15 - 1),
    "Edm.Int32": (-(2**31), 2**31 - 1),
    "Edm.Int64": (-(2**63), 2**63 - 1),
}
# OData ABNF (not strict RFC 3339): seconds may be omitted; fractions up to 12 digits (Graph
# sends 7, e.g. 2017-04-15T03:00:50.7579581Z). A zone (Z or ±hh:mm) is mandatory.
_DATETIMEOFFSET = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,12})?)?(?:Z|[+-](\d{2}):(\d{2}))",
    re.ASCII,  # \d must not accept other scripts' digits
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_TIME_OF_DAY = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,12})?)?", re.ASCII)
# ISO 8601 duration. OData's own grammar has only days and a time part, but Graph data also uses
# years/months/weeks, so the general form is accepted; at least one component is required.
_DURATION = re.compile(
    r"-?P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?"
    r"(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?",
    re.ASCII,
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Edm types whose JSON value this validator does not constrain.
_UNCHECKED_EDM = frozenset(
    {"Edm.Stream", "Edm.Untyped", "Edm.PrimitiveType", "Edm.ComplexType", "Edm.EntityType"}
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _valid_datetime(m: re.Match[str]) -> bool:
    year, month, day, hour, minute = (int(g) for g in m.group(1, 2, 3, 4, 5))
    second = int(m.group(6) or 0)
    try:
        dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    off_h, off_m = m.group(7), m.group(8)
    return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)


def _valid_date(m: re.Match[str]) -> bool:
    try:
        dt.date(*(int(g) for g in m.groups()))
    except ValueError:
        return False
    return True


def _valid_time(m: re.Match[str]) -> bool:
    return int(m.group(1)) <= 23 and int(m.group(2)) <= 59 and int(m.group(3) or 0) <= 59


def _valid_base64(value: str) -> bool:
    # OData JSON specifies base64url, while Graph returns standard base64 (e.g. fileAttachment
    # contentBytes); accept either alphabet, padded or not.
    normalized = value.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        base64.b64decode(normalized, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_primitive(value: object, edm: str) -> str | None:
    """None when ``value`` is a valid JSON representation of ``edm``, else what was expected."""
    if edm in _UNCHECKED_EDM or edm.startswith(("Edm.Geography", "Edm.Geometry")):
        return None
    if edm == "Edm.String":
        return None if isinstance(value, str) else edm
    if edm == "Edm.Boolean":
        return None if isinstance(value, bool) else edm
    if edm in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            return edm
        low, high = _INT_RANGES[edm]
        return None if low <= value <= high else f"{edm} in [{low}, {high}]"
    if edm in ("Edm.Double", "Edm.Single"):
        # OData writes the special values as strings; plain JSON numbers must be finite.
        if isinstance(value, str):
            return None if value in ("NaN", "INF", "-INF") else edm
        return None if _is_number(value) and math.isfinite(value) else edm
    if edm == "Edm.Decimal":
        return None if _is_number(value) and math.isfinite(value) else edm
    if not isinstance(value, str):
        return edm
    if edm == "Edm.DateTimeOffset":
        m = _DATETIMEOFFSET.fullmatch(value)
        ok = m is not None and _valid_datetime(m)
        return None if ok else f"{edm} (e.g. 2026-12-01T09:00:00Z, with Z or ±hh:mm)"
    if edm == "Edm.Date":
        m = _DATE.fullmatch(value)
        return None if m is not None and _valid_date(m) else f"{edm} (YYYY-MM-DD)"
    if edm == "Edm.TimeOfDay":
        m = _TIME_OF_DAY.fullmatch(value)
        return None if m is not None and _valid_time(m) else f"{edm} (HH:MM:SS[.fffffff])"
    if edm == "Edm.Duration":
        return None if _DURATION.fullmatch(value) else f"{edm} (ISO 8601, e.g. PT30M)"
    if edm == "Edm.Guid":
        return None if _GUID.fullmatch(value) else f"{edm} (8-4-4-4-12 hex digits)"
    if edm == "Edm.Binary":
        return None if _valid_base64(value) else f"{edm} (base64)"
    return None  # an Edm type Graph v1.0 does not use: nothing to check


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

# Instance annotation names are namespace-qualified terms (OData JSON §18); Graph additionally
# sends the bare "@removed" in delta responses.
_ANNOTATION_TERM = re.compile(r"removed|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_STRING_CONTROL = frozenset(
    {
        "odata.context",
        "odata.etag",
        "odata.id",
        "odata.type",
        "odata.nextLink",
        "odata.deltaLink",
        "odata.editLink",
        "odata.readLink",
    }
)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _listing(names: Iterable[str]) -> str:
    items = list(names)
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


class _Validator:
    def __init__(self, model: _Model, *, allow_annotations: bool, request: bool) -> None:
        self.model = model
        self.allow_annotations = allow_annotations
        # Request bodies: nothing required, enum members matched case-insensitively.
        self.request = request
        self.problems: list[str] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(root)'}: {message}")

    # -- values ------------------------------------------------------------------------------

    def value(self, value: object, ref: TypeRef, path: str) -> None:
        if ref.collection:
            if value is None:
                # A collection is written as [] when empty; null is only reported where the CSDL
                # says Nullable="false", to avoid flagging what Graph may legitimately send.
                if not ref.nullable:
                    self.report(path, f"null not allowed ({ref} is Nullable=false)")
                return
            if not isinstance(value, list | tuple):
                self.report(path, f"expected {ref}, got {_json_type(value)}")
                return
            item = TypeRef(ref.name, collection=False, nullable=ref.nullable)
            for i, element in enumerate(value):
                self.value(element, item, f"{path}[{i}]")
            return
        if value is None:
            if not ref.nullable:
                self.report(path, f"null not allowed ({ref.name} is Nullable=false)")
            return
        if ref.name.startswith("Edm."):
            expected = _check_primitive(value, ref.name)
            if expected is not None:
                shown = _json_type(value) if not isinstance(value, str) else repr(value)
                self.report(path, f"expected {expected}, got {shown}")
            return
        enum = self.model.enums.get(ref.name)
        if enum is not None:
            self.enum(value, enum, path)
            return
        structured = self.model.structured.get(ref.name)
        if structured is not None:
            self.structured(value, structured, path)
        # Anything else would be a dangling reference in the CSDL itself: nothing to check.

    def enum(self, value: object, enum: EnumType, path: str) -> None:
        if not isinstance(value, str):
            self.report(path, f"expected {enum.name} (a member name), got {_json_type(value)}")
            return
        # Flags enums combine members as "a,b" (OData JSON); tolerate spaces after commas.
        parts = [p.strip() for p in value.split(",")] if enum.flags else [value]
        folded = {m.casefold(): m for m in enum.members}
        for part in parts:
            if part in enum.members:
                continue
            canonical = folded.get(part.casefold())
            if canonical is not None and self.request:
                continue
            if canonical is not None:
                self.report(
                    path,
                    f"{part!r} is not a member of {enum.name}; responses use the declared "
                    f"spelling {canonical!r}",
                )
            else:
                self.report(
                    path,
                    f"{part!r} is not a member of {enum.name} "
                    f"(expected one of: {_listing(enum.members)})",
                )

    def structured(self, value: object, declared: StructuredType, path: str) -> None:
        if not isinstance(value, Mapping):
            self.report(path, f"expected {declared.name} (object), got {_json_type(value)}")
            return
        actual, type_needed = self.runtime_type(value, declared, path)
        if actual.abstract:
            self.report(
                path,
                f"{actual.name} is abstract: the value needs an @odata.type naming a concrete "
                "derived type",
            )
        props = self.model.all_properties(actual.name)
        is_open = self.model.is_open(actual.name)
        for key, item in value.items():
            if not isinstance(key, str):
                self.report(path, f"non-string key {key!r}")
                continue
            child = _join(path, key)
            if "@" in key:
                self.annotation(key, item, path, type_needed=type_needed)
                continue
            prop = props.get(key)
            if prop is None:
                if not is_open:
                    self.report(child, f"unknown property of {actual.name}{self.hint(key, props)}")
                continue
            self.value(item, prop.type, child)
        if not self.request and actual.kind == "entity":
            for key in self.model.keys(actual.name):
                if key not in value:
                    self.report(path, f"missing key property {key!r} of {actual.name}")

    def runtime_type(
        self, value: Mapping[str, Any], declared: StructuredType, path: str
    ) -> tuple[StructuredType, bool]:
        """The type to validate ``value`` as, and whether its @odata.type is required for that."""
        raw = value.get("@odata.type")
        if raw is None:
            return declared, False
        where = _join(path, "@odata.type")
        if not isinstance(raw, str):
            self.report(where, f"expected a type name string, got {_json_type(raw)}")
            return declared, False
        resolved = self.model.resolve(raw)
        is_open = self.model.is_open(declared.name)
        if resolved is None or resolved not in self.model.structured:
            # An open type may carry someone else's type name: change notifications put the
            # changed resource's type ("#Microsoft.Graph.Event") into the open resourceData.
            if not is_open:
                self.report(where, f"{raw!r} is not an entity or complex type of Graph v1.0")
            return declared, False
        if not self.model.is_subtype(resolved, declared.name):
            if not is_open:
                self.report(where, f"{raw!r} is not {declared.name} or derived from it")
            return declared, False
        return self.model.structured[resolved], resolved != declared.name

    def annotation(self, key: str, value: object, path: str, *, type_needed: bool) -> None:
        where = _join(path, key)
        target, _, term = key.partition("@")
        if not self.allow_annotations:
            # OData requires @odata.type whenever the value's type differs from the declared
            # one, so it stays allowed there: otherwise no derived value could ever be valid.
            if not (key == "@odata.type" and type_needed):
                self.report(where, "instance annotations are not allowed here")
            return
        if not _ANNOTATION_TERM.fullmatch(term):
            self.report(where, "malformed annotation name (expected namespace.term)")
            return
        if target:
            return  # property annotations (prop@odata.type, prop@odata.bind, …): any value
        if term in _STRING_CONTROL and not isinstance(value, str):
            self.report(where, f"expected str, got {_json_type(value)}")
        elif term == "odata.count" and (not isinstance(value, int) or isinstance(value, bool)):
            self.report(where, f"expected int, got {_json_type(value)}")
        elif term == "removed" and not isinstance(value, Mapping):
            self.report(where, f"expected object (e.g. {{'reason': 'deleted'}}), got {value!r}")

    @staticmethod
    def hint(key: str, known: Iterable[str]) -> str:
        folded = {k.casefold(): k for k in known}
        match = folded.get(key.casefold())
        return f" (did you mean {match!r}?)" if match else ""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def validate(
    payload: Mapping[str, Any],
    type_name: str,
    *,
    allow_annotations: bool = True,
    partial: bool = False,
) -> list[str]:
    """Problems found validating ``payload`` as an instance of ``type_name`` ([] = valid).

    ``partial=True`` is for request bodies (POST/PATCH): nothing is required, and enum members
    are matched case-insensitively as Graph reads them. Raises ValueError for a type name that
    is not an entity or complex type of Graph v1.0 (a bug in the caller, not in the payload).
    """
    model = _model()
    declared = model.require_structured(type_name)
    validator = _Validator(model, allow_annotations=allow_annotations, request=partial)
    validator.structured(payload, declared, "")
    return validator.problems


def validate_collection(
    payload: Mapping[str, Any],
    item_type: str,
    *,
    allow_annotations: bool = True,
    partial: bool = False,
) -> list[str]:
    """Problems in a collection response ``{"value": [...], "@odata.nextLink": ...}``.

    ``item_type`` may also be a primitive (``Edm.String``) or enum type.
    """
    model = _model()
    if item_type.startswith("Edm."):
        ref = TypeRef(item_type, collection=True, nullable=False)
    else:
        resolved = model.resolve(item_type)
        if resolved is None:
            raise ValueError(f"{item_type!r} is not a type of Graph v1.0")
        ref = TypeRef(resolved, collection=True, nullable=False)
    validator = _Validator(model, allow_annotations=allow_annotations, request=partial)
    if not isinstance(payload, Mapping):
        validator.report("", f"expected a collection object, got {_json_type(payload)}")
        return validator.problems
    if "value" not in payload:
        validator.report("", "missing 'value' (the collection's items)")
    for key, item in payload.items():
        if key == "value":
            validator.value(item, ref, "value")
        elif isinstance(key, str) and key.startswith("@"):
            validator.annotation(key, item, "", type_needed=False)
        else:
            validator.report(str(key), "unknown member of a collection response")
    return validator.problems


def validate_action_parameters(
    payload: Mapping[str, Any], action_name: str, binding_type: str | None
) -> list[str]:
    """Problems in the request body of an action (``POST …/calendar/getSchedule``).

    ``binding_type`` is the type the action is invoked on (``calendar``; a type derived from the
    declared binding type also matches; ``Collection(x)`` for collection-bound actions; None for
    unbound actions). Parameter names are matched case-insensitively, because the CSDL declares
    e.g. ``Schedules`` while Graph documents (and accepts) ``schedules``; names that match no
    parameter are reported. Raises ValueError if no such action exists for that binding.
    """
    model = _model()
    action = _find_action(model, action_name, binding_type)
    validator = _Validator(model, allow_annotations=True, request=True)
    if not isinstance(payload, Mapping):
        validator.report("", f"expected an object of parameters, got {_json_type(payload)}")
        return validator.problems
    by_folded = {name.casefold(): (name, ref) for name, ref in action.parameters}
    seen: dict[str, str] = {}
    for key, item in payload.items():
        if not isinstance(key, str):
            validator.report("", f"non-string key {key!r}")
            continue
        if "@" in key:
            validator.annotation(key, item, "", type_needed=False)
            continue
        found = by_folded.get(key.casefold())
        if found is None:
            validator.report(
                key,
                f"unknown parameter of {action.name}"
                f" (parameters: {_listing(n for n, _ in action.parameters) or 'none'})",
            )
            continue
        declared_name, ref = found
        if declared_name in seen:
            validator.report(
                key, f"parameter {declared_name!r} given twice (also as {seen[declared_name]!r})"
            )
            continue
        seen[declared_name] = key
        validator.value(item, ref, key)
    # OData: non-binding parameters that are not nullable must be supplied.
    for name, ref in action.parameters:
        if not ref.nullable and name not in seen:
            validator.report("", f"missing required parameter {name!r} of {action.name}")
    return validator.problems


def _find_action(model: _Model, action_name: str, binding_type: str | None) -> Action:
    name = model.qualify(action_name.strip())
    candidates = model.actions.get(name.casefold(), [])
    if not candidates:
        raise ValueError(f"{action_name!r} is not an action of Graph v1.0")
    if binding_type is None:
        unbound = [a for a in candidates if a.binding is None]
        if not unbound:
            raise ValueError(f"{action_name!r} has no unbound overload; give its binding type")
        return unbound[0]
    collection = binding_type.startswith("Collection(") and binding_type.endswith(")")
    inner = binding_type[len("Collection(") : -1] if collection else binding_type
    resolved = model.resolve(inner)
    if resolved is None:
        raise ValueError(f"{binding_type!r} is not a type of Graph v1.0")
    # An action bound to a base type applies to derived types too; the nearest binding wins.
    lineage = [st.name for st in model.ancestry(resolved)] or [resolved]
    best: tuple[int, Action] | None = None
    for action in candidates:
        binding = action.binding
        if binding is None or binding.collection != collection or binding.name not in lineage:
            continue
        distance = lineage.index(binding.name)
        if best is None or distance < best[0]:
            best = (distance, action)
    if best is None:
        bindings = sorted({str(a.binding) for a in candidates if a.binding is not None})
        raise ValueError(
            f"{action_name!r} is not bound to {binding_type!r}; bindings: {_listing(bindings)}"
        )
    return best[1]


def type_names() -> frozenset[str]:
    """Qualified names of every entity, complex and enum type in the metadata."""
    model = _model()
    return frozenset((*model.structured, *model.enums))


def has_type(name: str) -> bool:
    """Whether ``name`` (short, alias- or namespace-qualified) names a type in the metadata."""
    return _model().resolve(name) is not None


def property_type(type_name: str, prop: str) -> str | None:
    """Declared type of ``prop`` on ``type_name`` (inherited and navigation properties included).

    Returns e.g. ``"microsoft.graph.dateTimeTimeZone"`` or ``"Collection(microsoft.graph.attendee)"``,
    or None when the type declares no such property. Raises ValueError for an unknown type.
    """
    model = _model()
    declared = model.require_structured(type_name)
    found = model.all_properties(declared.name).get(prop)
    return None if found is None else str(found.type)
