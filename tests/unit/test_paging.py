"""Lists (shared/core/paging.py): `top`, keyset cursors and paging across equal keys; the strict
query-parameter check (functions/http.py `check_query`, the OpenAPI description's parameters).
Pure: no storage, no host."""

from __future__ import annotations

import base64
import json
import random

import azure.functions as func
import pytest

from functions.http import check_query, handle_errors, json_response, next_link
from shared.api.openapi import declared_query, openapi_document
from shared.core.errors import ValidationFailed
from shared.core.paging import (
    decode_cursor,
    encode_cursor,
    keyset_page,
    parse_top,
    top_of,
)
from shared.storage import tablestore


def _fields(err: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [e.field for e in err.value.errors]


@pytest.mark.parametrize(
    "key",
    [("2026-12-01T09:00:00Z", "room-1", "o-" + "a" * 32), ("x",), ("", "é|~/?%'", "\u2603")],
)
def test_a_cursor_round_trips(key: tuple[str, ...]) -> None:
    token = encode_cursor(key)
    assert decode_cursor(token, len(key)) == key
    assert token.isascii() and "=" not in token  # safe in a query as it is


def test_no_token_is_the_first_page() -> None:
    assert decode_cursor(None, 3) is None and decode_cursor("", 3) is None


def _cursor_of(raw: object) -> str:
    return "k1." + base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "k1.",
        "k1.!!!!",
        "k1." + "A" * 5000,  # longer than any cursor we issue
        _cursor_of({"pk": "a", "rk": "b"}),  # not a list
        _cursor_of(["a", "b"]),  # another list's arity
        _cursor_of(["a", 1, "c"]),  # not strings
        _cursor_of(["a", "b", "c" * 600]),  # a part longer than any key
        # A Table Storage token of ours is refused by a cursor list (and the other way round).
        str(tablestore.encode_continuation({"PartitionKey": "1!8!YQ--", "RowKey": "1!8!Yg--"})),
    ],
)
def test_a_token_we_did_not_issue_is_a_400_naming_it(token: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        decode_cursor(token, 3)
    assert _fields(err) == ["continuationToken"]


def test_a_cursor_is_not_a_table_storage_token() -> None:
    with pytest.raises(ValidationFailed) as err:
        tablestore.decode_continuation(encode_cursor(("a", "b")))
    assert _fields(err) == ["continuationToken"]


def test_top_defaults_and_bounds() -> None:
    assert parse_top(None) == 100 and parse_top("") == 100 and parse_top("1000") == 1000
    assert parse_top(None, default=20, maximum=100) == 20
    for bad in ("0", "1001", "-1", "1.5", "ten", " 5"):
        with pytest.raises(ValidationFailed) as err:
            parse_top(bad)
        assert _fields(err) == ["top"]


def test_limit_is_the_older_name_of_top() -> None:
    assert top_of({"limit": "7"}, alias="limit") == 7
    assert top_of({"top": "8"}, alias="limit") == 8
    with pytest.raises(ValidationFailed) as err:
        top_of({"limit": "500"}, maximum=100, alias="limit")
    assert _fields(err) == ["limit"]
    with pytest.raises(ValidationFailed) as err:
        top_of({"limit": "5", "top": "5"}, alias="limit")
    assert _fields(err) == ["limit"]


def test_keyset_pages_lose_and_repeat_nothing_with_equal_keys_and_changes_between_pages() -> None:
    rng = random.Random(7)
    # Many items share a start (the first key part): only the whole key is unique.
    items = [(f"2026-12-01T0{rng.randrange(3)}:00:00Z", f"r{rng.randrange(2)}", f"id{i:03d}")
             for i in range(50)]  # fmt: skip
    key = lambda i: i  # noqa: E731 (the items are their keys)
    seen: list[tuple[str, str, str]] = []
    token = None
    pages = 0
    while True:
        page = keyset_page(items, key, arity=3, top=7, token=token)
        assert len(page.value) <= 7
        seen += page.value
        pages += 1
        if page.continuation_token is None:
            break
        token = page.continuation_token
        if pages == 2:
            items = [*items, ("2000-01-01T00:00:00Z", "r0", "early")]  # before the cursor
    assert seen == sorted(set(seen)) and len(seen) == 50 and pages == 8


def test_an_empty_list_and_an_exact_last_page_end_with_no_token() -> None:
    assert keyset_page([], lambda i: (i,), arity=1, top=5, token=None).continuation_token is None
    first = keyset_page(["a", "b"], lambda i: (i,), arity=1, top=2, token=None)
    assert first.value == ["a", "b"] and first.continuation_token is None


def test_next_link_keeps_the_query_and_replaces_the_token() -> None:
    url = "http://h/api/buildings/b/bookings?from=x&top=2&continuationToken=old&empty="
    assert next_link(url, None) is None
    assert next_link(url, "new") == (
        "http://h/api/buildings/b/bookings?from=x&top=2&empty=&continuationToken=new"
    )


# --- strict query parameters -------------------------------------------------------------------


def test_declared_query_follows_the_description() -> None:
    assert declared_query("GET", "/buildings/b/bookings") >= {
        "from", "to", "resourceId", "source", "status", "top", "continuationToken",
    }  # fmt: skip
    assert declared_query("GET", "/buildings/b/resources/r1") == frozenset()
    assert declared_query("POST", "/graph/notifications") == {"validationToken"}
    # The most literal path wins: users:import is not users/{email}.
    assert declared_query("POST", "/buildings/b/users:import") == frozenset()
    # Open: Entra's redirect targets and the console's page (its SPA redirect URI).
    assert declared_query("GET", "/oauth/callback") is None
    assert declared_query("GET", "/oauth/adminconsent") is None
    assert declared_query("GET", "/console/") is None
    assert declared_query("GET", "/console/assets/x.js") is None
    assert declared_query("GET", "/nothing/here") is None  # not ours: the host answers 404


def test_every_operation_of_the_description_is_found_by_its_own_path() -> None:
    for path, operations in openapi_document()["paths"].items():
        concrete = path.replace("{path}", "index.html")
        for name in ("building", "resource", "company", "booking", "email", "record", "check",
                     "webhook", "delivery"):  # fmt: skip
            concrete = concrete.replace("{" + name + "}", "x1")
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            found = declared_query(method, concrete)
            assert found is None or found == declared, (method, path)


def _request(url: str, params: dict[str, str], method: str = "GET") -> func.HttpRequest:
    return func.HttpRequest(method, url, params=params, body=b"")


def test_an_unknown_parameter_is_a_400_naming_it_before_the_handler_runs() -> None:
    ran: list[str] = []

    @handle_errors
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        ran.append(req.url)
        return json_response({})

    base = "http://h/api/buildings/b/bookings"
    answer = handler(_request(base, {"from": "x", "stauts": "all", "colour": "red"}))
    assert answer.status_code == 400 and ran == []
    body = json.loads(answer.get_body())
    assert [e["field"] for e in body["errors"]] == ["colour", "stauts"]
    assert {e["message"] for e in body["errors"]} == {"is not a parameter of this operation"}
    assert handler(_request(base, {"from": "x", "status": "all"})).status_code == 200
    assert handler(_request("http://h/api/oauth/callback", {"iss": "x"})).status_code == 200
    assert len(ran) == 2


def test_a_route_that_declares_no_parameter_refuses_any() -> None:
    check_query(_request("http://h/api/health", {}))
    with pytest.raises(ValidationFailed) as err:
        check_query(_request("http://h/api/health", {"verbose": "1"}))
    assert _fields(err) == ["verbose"]
