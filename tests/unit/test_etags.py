"""If-Match parsing and the ETags of shared/core/etags.py, and their OpenAPI declaration (issue 22)."""

from __future__ import annotations

import pytest

from shared.api.openapi import ETAG_READS, IF_MATCH_WRITES, openapi_document
from shared.core.errors import PreconditionFailed, ValidationFailed, problem
from shared.core.etags import entity_tag, parse_if_match

STORED = "W/\"datetime'2026-12-04T21%3A00%3A00.1234567Z'\""


def test_an_etag_is_strong_quoted_and_shows_nothing_of_storage() -> None:
    tag = entity_tag(STORED)
    assert tag.startswith('"') and tag.endswith('"') and len(tag) == 24
    assert "datetime" not in tag and "2026" not in tag
    assert entity_tag(STORED) == tag and entity_tag(STORED + "x") != tag


def test_if_match_matches_by_strong_comparison() -> None:
    tag = entity_tag(STORED)
    parse_if_match(tag).check(STORED)  # type: ignore[union-attr]
    parse_if_match(f' "other" ,{tag} ').check(STORED)  # type: ignore[union-attr]
    parse_if_match("*").check(STORED)  # type: ignore[union-attr]
    for value in ('"other"', f"W/{tag}"):
        with pytest.raises(PreconditionFailed):
            parse_if_match(value).check(STORED)  # type: ignore[union-attr]
    with pytest.raises(PreconditionFailed):
        parse_if_match("*").check(None)  # type: ignore[union-attr]  # nothing stored
    assert parse_if_match(None) is None


@pytest.mark.parametrize(
    "value", ["", "abc", '"a" "b"', '"a",', '"a', "**", '"' + "a" * 3000 + '"']
)
def test_a_malformed_if_match_is_a_400_naming_it(value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_if_match(value)
    assert [e.field for e in caught.value.errors] == ["If-Match"]


def test_412_is_problem_details_with_its_reason() -> None:
    status, body = problem(PreconditionFailed())
    assert status == 412 and body["reason"] == "precondition_failed"


def test_openapi_declares_etag_and_if_match_on_exactly_the_conditional_operations() -> None:
    paths = openapi_document()["paths"]
    for method, path in ETAG_READS:  # a typo here would declare nothing: every entry is real
        responses = paths[path][method]["responses"]
        ok = [r for s, r in responses.items() if s in ("200", "201")]
        assert ok and all("ETag" in r["headers"] for r in ok), (method, path)
    conditional = {
        (method, path)
        for path, operations in paths.items()
        for method, op in operations.items()
        if any(p.get("name") == "If-Match" for p in op.get("parameters", []))
    }
    assert conditional == IF_MATCH_WRITES
    for method, path in IF_MATCH_WRITES:
        assert "412" in paths[path][method]["responses"]
