"""Key escaping (reversible, never a forbidden character), composite keys, continuation tokens,
transaction chunking and the azure.core → our error mapping. Pure: no storage needed."""

from __future__ import annotations

import random
import re

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from shared.core.errors import Conflict, NotFound, StorageError, ValidationFailed
from shared.storage import tablestore

# What the service refuses in keys, plus what we keep out on purpose (see shared/tablestore.py).
FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
AVOIDED = re.compile(r"[%'|]")

SAMPLES = [
    "",
    "plain",
    "ann@contoso.com",
    "ann+tag@contoso.com",
    "o'brien#1/x?@contoso.com",
    "100%/back\\slash",
    "tab\there\nnewline\x00nul\x7fdel\x85nel\x9f",
    "pipe|and~tilde~2F",
    "~",
    "~~41",
    "jörg@münchen.de",
    "日本語@例え.jp",
    "emoji 🙂 mix",
    "lone \ud800 surrogate",
]


@pytest.mark.parametrize("value", SAMPLES)
def test_escape_round_trips_and_leaves_no_forbidden_character(value: str) -> None:
    key = tablestore.escape_key(value)
    assert tablestore.unescape_key(key) == value
    assert not FORBIDDEN.search(key)
    assert not AVOIDED.search(key)


def test_safe_values_are_unchanged() -> None:
    for value in ("ann@contoso.com", "ann+x@contoso.com", "room-4A.b_c", "jörg@münchen.de"):
        assert tablestore.escape_key(value) == value


def test_escapes_are_utf8_bytes_in_upper_case_hex() -> None:
    assert tablestore.escape_key("a/b") == "a~2Fb"
    assert tablestore.escape_key("~") == "~7E"
    assert tablestore.escape_key("\x85") == "~C2~85"


def test_random_strings_round_trip() -> None:
    rng = random.Random(4)
    alphabet = "ab~%|/\\#?'\x00\x1f\x7f\x9f é🙂\ud800@+.-"
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        key = tablestore.escape_key(value)
        assert tablestore.unescape_key(key) == value
        assert not FORBIDDEN.search(key)


def test_escaping_is_injective() -> None:
    values = ["a/b", "a~2Fb", "a~b", "a|b", "a~7Cb", "a%2Fb"]
    assert len({tablestore.escape_key(v) for v in values}) == len(values)


def test_overlong_keys_are_refused() -> None:
    tablestore.escape_key("a" * tablestore.KEY_MAX_CHARS)
    with pytest.raises(ValueError, match="longer"):
        tablestore.escape_key("/" * 200)  # 600 characters once escaped


def test_composite_keys_split_back_even_with_separators_inside() -> None:
    parts = ["b|1", "2026/12/01", "r~x"]
    key = tablestore.join_key(*parts)
    assert key.count(tablestore.KEY_SEPARATOR) == 2
    assert tablestore.split_key(key) == parts


def test_continuation_tokens_round_trip_and_bad_ones_are_a_400() -> None:
    service = {"PartitionKey": "b1", "RowKey": "ann~2F@contoso.com"}
    token = tablestore.encode_continuation(service)
    assert token is not None and "=" not in token
    assert tablestore.decode_continuation(token) == service
    assert tablestore.encode_continuation(None) is None
    assert tablestore.decode_continuation(None) == {}
    for bad in ("not base64!", "e30", "WzFd", "eyJwayI6IDF9"):  # garbage, {}, [1], {"pk": 1}
        with pytest.raises(ValidationFailed) as err:
            tablestore.decode_continuation(bad)
        assert err.value.errors[0].field == "continuationToken"


def test_chunks_are_per_partition_and_at_most_100() -> None:
    ops: list[tablestore.Operation] = [
        ("upsert", {"PartitionKey": "b" if i % 3 else "a", "RowKey": f"{i:04d}"})
        for i in range(450)
    ]
    chunks = tablestore.chunk_operations(ops)
    assert sum(len(c) for c in chunks) == 450
    for chunk in chunks:
        assert len(chunk) <= tablestore.TRANSACTION_LIMIT
        assert len({op[1]["PartitionKey"] for op in chunk}) == 1
    b_rows = [op[1]["RowKey"] for c in chunks for op in c if op[1]["PartitionKey"] == "b"]
    assert b_rows == sorted(b_rows)  # order within a partition is kept
    assert tablestore.chunk_operations([]) == []


def _http_error(status: int, code: str = "Whatever") -> HttpResponseError:
    err = HttpResponseError(message=f"{status}")
    err.status_code = status
    err.error_code = code
    return err


@pytest.mark.parametrize(
    ("raised", "expected", "transient", "reason"),
    [
        (ResourceNotFoundError("gone"), NotFound, None, None),
        (ResourceExistsError("there"), Conflict, None, "exists"),
        (ResourceModifiedError("changed"), Conflict, None, "modified"),
        (_http_error(404), NotFound, None, None),
        (_http_error(409, "EntityAlreadyExists"), Conflict, None, "exists"),
        (_http_error(412, "UpdateConditionNotSatisfied"), Conflict, None, "modified"),
        (_http_error(503, "ServerBusy"), StorageError, True, "ServerBusy"),
        (_http_error(429), StorageError, True, "Whatever"),
        (_http_error(500), StorageError, True, "Whatever"),
        (_http_error(400, "InvalidInput"), StorageError, False, "InvalidInput"),
        (_http_error(403, "AuthorizationFailure"), StorageError, False, "AuthorizationFailure"),
        (ServiceRequestError("connection refused"), StorageError, True, None),
    ],
)
def test_storage_errors_map_to_our_tree(
    raised: Exception, expected: type, transient: bool | None, reason: str | None
) -> None:
    with pytest.raises(expected) as err, tablestore.storage_errors("read users"):
        raise raised
    if transient is not None:
        assert err.value.transient is transient
    assert err.value.reason == reason
    assert err.value.__cause__ is raised


def test_json_properties() -> None:
    assert tablestore.from_json_property(tablestore.json_property(["a", "é"])) == ["a", "é"]
    assert tablestore.from_json_property(None, []) == []
    assert tablestore.from_json_property("{broken", {}) == {}
    with pytest.raises(ValueError, match="too large"):
        tablestore.json_property("x" * 40_000)


def test_iso_utc() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert tablestore.iso_utc(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)) == "2026-12-01T09:00:00Z"
    plus_one = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert tablestore.iso_utc(plus_one) == "2026-12-01T09:00:00Z"
    assert tablestore.iso_utc("2026-12-01T10:00:00+01:00") == "2026-12-01T09:00:00Z"
    assert tablestore.iso_utc(None) is None
    assert tablestore.iso_utc("not a time") is None
