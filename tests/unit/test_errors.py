"""The error tree maps to problem+json in one place, without leaking internals."""

from __future__ import annotations

from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    FieldError,
    GraphError,
    GraphFailure,
    IdentityError,
    Unprocessable,
    ValidationFailed,
    problem,
)


def test_validation_names_each_field() -> None:
    status, body = problem(
        ValidationFailed(
            [FieldError("start", "must have an offset"), FieldError("end", "before start")]
        )
    )
    assert status == 400
    assert body["errors"] == [
        {"field": "start", "message": "must have an offset"},
        {"field": "end", "message": "before start"},
    ]
    assert "start" in body["detail"] and "end" in body["detail"]
    assert set(body) >= {"type", "title", "status", "detail"}


def test_reason_codes_reach_the_caller_for_client_errors() -> None:
    status, body = problem(Unprocessable("Paid resources cannot sync", reason="not_supported"))
    assert (status, body["reason"]) == (422, "not_supported")
    assert problem(Conflict("slot taken"))[0] == 409


def test_internal_errors_hide_their_detail() -> None:
    status, body = problem(BookingBridgeError("stack trace with token=abc", log_detail="x"))
    assert status == 500
    assert "token" not in str(body)


def test_graph_errors_know_when_to_retry() -> None:
    assert GraphError(GraphFailure(429, "ApplicationThrottled")).transient
    assert GraphError(GraphFailure(503, "ServiceUnavailable")).transient
    assert not GraphError(GraphFailure(403, "ErrorAccessDenied")).transient
    assert problem(GraphError(GraphFailure(404, "ErrorItemNotFound")))[0] == 503


def test_identity_reauth_is_not_transient() -> None:
    err = IdentityError(
        "refresh token expired", error="invalid_grant", codes=(700082,), reauth=True
    )
    assert not err.transient and err.reauth
