"""shared/core/validate: the field checks every body and path goes through."""

from __future__ import annotations

import pytest

from shared.core.validate import Checker


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "is required"), ("", "is required"), ("not-an-address", "must be an email address")],
)
def test_a_missing_email_is_required_a_bad_one_malformed(value: object, message: str) -> None:
    check = Checker({}, prefix="booker.")
    assert check.email("email", value) is None
    assert [(e.field, e.message) for e in check.errors] == [("booker.email", message)]


def test_a_good_email_is_normalised_and_a_nullable_one_may_be_absent() -> None:
    check = Checker({})
    assert check.email("email", "Ann@Contoso.COM") == "ann@contoso.com"
    assert check.email("email", None, nullable=True) is None
    assert check.errors == []


@pytest.mark.parametrize(
    ("value", "expected"), [(8, 8), (8.0, 8), (0, 0), (-0.0, 0), (1440.0, 1440)]
)
def test_an_integer_is_json_schemas_integer(value: object, expected: int) -> None:
    check = Checker({"n": value})
    result = check.integer("n", minimum=0, maximum=1440)
    assert result == expected and type(result) is int
    assert check.errors == []


@pytest.mark.parametrize("value", [8.5, True, "8", 1441, -1, 1441.0, float("nan"), float("inf")])
def test_a_fraction_a_bool_text_or_out_of_range_is_not_an_integer(value: object) -> None:
    check = Checker({"n": value})
    assert check.integer("n", minimum=0, maximum=1440) is None
    assert [(e.field, e.message) for e in check.errors] == [
        ("n", "must be an integer from 0 to 1440 or null")
    ]
