"""The one error hierarchy of BookingBridge, and its mapping to HTTP problem details (RFC 9457).

    BookingBridgeError                 500 internal (never shows details to callers)
    ├── ValidationFailed               400 bad input; `errors` names each bad field
    ├── Unauthorized                   401 no or bad bearer token
    ├── Forbidden                      403 wrong role or building
    │   ├── CalendarNotMapped          (shared/graph/guard.py) a Graph call on an unmapped calendar
    │   └── GraphPathNotAllowed        (shared/graph/guard.py) a Graph path outside the allow-list
    ├── NotFound                       404
    ├── MethodNotAllowed               405 with `Allow` (`…/{id}:action` asked with another method)
    ├── Conflict                       409 (calendar mapped elsewhere, ...)
    │   └── SlotTaken                  (shared/availability/busy.py) the resource is booked at that time
    ├── PreconditionFailed             412 an If-Match that the stored version does not match
    ├── PayloadTooLarge                413 a body over its size limit (shared/core/jsonbody.py)
    ├── UnsupportedMediaType           415 (shared/subscriptions/inbox.py) the webhook only takes JSON
    ├── Unprocessable                  422 understood but not doable (`reason` code: not_supported, ...)
    │   └── UnsafeUrl                  (shared/webhooks/ssrf.py) a webhook URL to a non-public address
    └── DependencyError                503 a dependency failed; `transient` says whether to retry
        ├── GraphError                 carries Graph's status, code and request id
        ├── IdentityError              the identity platform refused (AADSTS code, `reauth` flag)
        ├── SecretStoreError           Key Vault
        └── StorageError               Table / Queue storage

Subclasses live beside the code that raises them; the tree above lists them all. Services raise
these; triggers call `problem(err)` to turn any of them into (status, body). Callers never
see stack traces or secrets: `detail` is written for the caller, `log_detail` for the logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://bookingbridge.dev/problems/"


@dataclass(frozen=True)
class FieldError:
    """One bad input field: `field` is a JSON-pointer-like path (`booker.email`, `start`)."""

    field: str
    message: str


class BookingBridgeError(Exception):
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(
        self, detail: str = "", *, reason: str | None = None, log_detail: str = ""
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.reason = reason
        self.log_detail = log_detail


class ValidationFailed(BookingBridgeError):
    status = 400
    title = "Invalid request"
    slug = "validation"

    def __init__(self, errors: list[FieldError], detail: str = "") -> None:
        names = ", ".join(e.field for e in errors)
        super().__init__(detail or f"Invalid fields: {names}", reason="validation")
        self.errors = errors


class Unauthorized(BookingBridgeError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(BookingBridgeError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(BookingBridgeError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(BookingBridgeError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class MethodNotAllowed(BookingBridgeError):
    """405 (RFC 9110 §15.5.6): the path names an action (`…/{id}:ping`) that takes only `allow`.

    Azure's host routes `PATCH …/webhooks/x:ping` to `PATCH …/webhooks/{webhook}` (id `x:ping`);
    the handler answers this rather than a 400 naming an id nobody meant."""

    status = 405
    title = "Method not allowed"
    slug = "method-not-allowed"

    def __init__(self, allow: str) -> None:
        super().__init__(f"This path takes only {allow}", reason="method_not_allowed")
        self.allow = allow


class PreconditionFailed(BookingBridgeError):
    """412 (RFC 9110 §13.1.1): the caller's If-Match names another version (shared/core/etags.py)."""

    status = 412
    title = "Precondition failed"
    slug = "precondition-failed"

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            detail or "The item has changed since it was read (If-Match); read it again",
            reason="precondition_failed",
        )


class PayloadTooLarge(BookingBridgeError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class Unprocessable(BookingBridgeError):
    status = 422
    title = "Cannot be done"
    slug = "unprocessable"


class DependencyError(BookingBridgeError):
    status = 503
    title = "A dependency is unavailable"
    slug = "dependency"

    def __init__(
        self,
        detail: str = "",
        *,
        transient: bool = True,
        reason: str | None = None,
        log_detail: str = "",
    ) -> None:
        super().__init__(detail, reason=reason, log_detail=log_detail)
        self.transient = transient


@dataclass
class GraphFailure:
    """What Graph said, kept for audit and sync health (no secrets in here)."""

    status: int
    code: str
    request_id: str | None = None
    retry_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class GraphError(DependencyError):
    title = "Microsoft Graph request failed"
    slug = "graph"

    def __init__(self, failure: GraphFailure, detail: str = "") -> None:
        transient = failure.status in (429, 500, 502, 503, 504) or failure.status == 0
        super().__init__(
            detail or f"Microsoft Graph answered {failure.status} {failure.code}",
            transient=transient,
            reason=failure.code,
        )
        self.failure = failure


class IdentityError(DependencyError):
    title = "Microsoft identity platform refused"
    slug = "identity"

    def __init__(
        self, detail: str, *, error: str, codes: tuple[int, ...] = (), reauth: bool = False
    ) -> None:
        super().__init__(
            detail, transient=not reauth and error == "temporarily_unavailable", reason=error
        )
        self.error = error
        self.codes = codes
        self.reauth = reauth


class SecretStoreError(DependencyError):
    title = "Key Vault request failed"
    slug = "key-vault"


class StorageError(DependencyError):
    title = "Storage request failed"
    slug = "storage"


def problem(err: BookingBridgeError) -> tuple[int, dict[str, Any]]:
    """Map an error to (HTTP status, problem+json body). The only place errors become HTTP."""
    public_detail = (
        err.detail if err.status < 500 or isinstance(err, DependencyError) else err.title
    )
    body: dict[str, Any] = {
        "type": _TYPE_BASE + err.slug,
        "title": err.title,
        "status": err.status,
        "detail": public_detail,
    }
    if err.reason and err.status < 500:
        body["reason"] = err.reason
    if isinstance(err, ValidationFailed):
        body["errors"] = [{"field": e.field, "message": e.message} for e in err.errors]
    return err.status, body
