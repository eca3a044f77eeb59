"""Graph's error shape and the one exception every handler raises.

Every refusal in the emulator is a `GraphError`; the dispatcher turns it into Graph's body
`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}` with the
`request-id` / `client-request-id` headers, so client code branching on `code` sees what Graph sends.
"""

from __future__ import annotations

from typing import Any

from .model import well_formed_id


class GraphError(Exception):
    """A refusal in Graph's shape (status, code, message, extra headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        inner_code: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.inner_code = inner_code


def error_body(
    err: GraphError, *, date: str, request_id: str, client_request_id: str
) -> dict[str, Any]:
    inner: dict[str, Any] = {
        "date": date,
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    if err.inner_code:
        inner["code"] = err.inner_code
    return {"error": {"code": err.code, "message": err.message, "innerError": inner}}


# Messages as Graph/Exchange word them (where known); clients must branch on the code only.
def item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def id_malformed() -> GraphError:
    """An id that is no Outlook id at all (not base64url of an entry id): 400, not 404."""
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def item_or_malformed(ident: str) -> GraphError:
    return item_not_found() if well_formed_id(ident) else id_malformed()


def invalid_user(ident: str) -> GraphError:
    return GraphError(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")


def access_denied(
    message: str = "Access is denied. Check credentials and try again.",
) -> GraphError:
    return GraphError(403, "ErrorAccessDenied", message)


def invalid_request(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def unauthenticated(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message)
