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
