"""A transient 503 says when to retry (Retry-After), a permanent one does not (issue 22)."""

from __future__ import annotations

import pytest

from functions.http import RETRY_AFTER_SECONDS, problem_response
from shared.core.errors import (
    BookingBridgeError,
    GraphError,
    GraphFailure,
    StorageError,
    ValidationFailed,
)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (StorageError("Storage unreachable", transient=True), str(RETRY_AFTER_SECONDS)),
        (GraphError(GraphFailure(429, "ApplicationThrottled", retry_after=12.2)), "13"),
        (GraphError(GraphFailure(503, "ServiceUnavailable")), str(RETRY_AFTER_SECONDS)),
        (StorageError("Storage request failed", transient=False), None),
        (GraphError(GraphFailure(403, "ErrorAccessDenied")), None),
        (ValidationFailed([]), None),
        (BookingBridgeError(), None),
    ],
)
def test_retry_after_only_where_retrying_helps(
    err: BookingBridgeError, expected: str | None
) -> None:
    response = problem_response(err)
    assert response.headers.get("Retry-After") == expected
