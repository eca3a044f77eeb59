"""Entra ID error responses: the token endpoint's JSON and the authorize endpoint's redirects/pages."""

from __future__ import annotations

import datetime as dt
import html
import uuid
from urllib.parse import urlencode

from starlette.responses import HTMLResponse, JSONResponse

# AADSTS code -> (OAuth error, message). Messages paraphrase Entra's (reference-error-codes.md).
MESSAGES: dict[int, str] = {
    50011: "The redirect URI '{redirect_uri}' specified in the request does not match the "
    "redirect URIs configured for the application '{client_id}'.",
    50034: "The user account {user} does not exist in the {tenant} directory.",
    50057: "The user account is disabled.",
    50058: "A silent sign-in request was sent but no user is signed in.",
    70003: "The app requested an unsupported grant type.",
    50059: "No tenant-identifying information found in either the request or implied by any "
    "provided credentials.",
    50126: "Error validating credentials due to invalid username or password.",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
    "The user might have changed or reset their password. The grant was issued on "
    "'{issued}' and the TokensValidFrom date (before which tokens are not valid) for this "
    "user is '{valid_from}'.",
    50194: "Application '{client_id}' is not configured as a multi-tenant application. Usage of "
    "the /common endpoint is not supported for such applications created after "
    "'10/15/2018'. Use a tenant-specific endpoint or configure the application to be "
    "multi-tenant.",
    54005: "OAuth2 Authorization code was already redeemed, please retry with a new valid code or "
    "use an existing refresh token.",
    65001: "The user or administrator has not consented to use the application with ID "
    "'{client_id}' named '{app_name}'. Send an interactive authorization request for this "
    "user and resource.",
    65004: "User declined to consent to access the app.",
    70000: "The request was denied because one or more grants are invalid or malformed.",
    70008: "The provided authorization code or refresh token has expired due to inactivity. Send "
    "a new interactive authorization request for this user and resource.",
    70011: "The provided request must include a 'scope' input parameter. The provided value for "
    "the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    90002: "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
    "are signing into the correct cloud.",
    90094: "Admin consent is required for the permissions requested by this application.",
    500011: "The resource principal named {resource} was not found in the tenant named "
    "{tenant}. This can happen if the application has not been installed by the "
    "administrator of the tenant or consented to by any user in the tenant.",
    500112: "The reply address '{got}' does not match the reply address '{expected}' provided "
    "when requesting Authorization code.",
    501481: "The Code_Verifier does not match the code_challenge supplied in the authorization "
    "request.",
    501491: "Invalid size of Code_Challenge parameter.",
    700016: "Application with identifier '{client_id}' was not found in the directory "
    "'{tenant}'. This can happen if the application has not been installed by the "
    "administrator of the tenant or consented to by any user in the tenant. You may have "
    "sent your authentication request to the wrong tenant.",
    700025: "Client is public so neither 'client_assertion' nor 'client_secret' should be "
    "presented.",
    700084: "The refresh token was issued to a single page app (SPA), and therefore has a fixed, "
    "limited lifetime of 1.00:00:00, which can't be extended. It is now expired and a new sign "
    "in request must be sent by the SPA to the sign in page. The token was issued on "
    "'{issued}'.",
    700054: "response_type '{response_type}' is not enabled for the application.",
    700082: "The refresh token has expired due to inactivity. The token was issued on '{issued}' "
    "and was inactive for 90.00:00:00.",
    900144: "The request body must contain the following parameter: '{parameter}'.",
    1002012: "The provided value for scope {scope} is not valid. Client credential flows must "
    "have a scope value with /.default suffixed to the resource identifier (application ID "
    "URI).",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is the "
    "client secret value, not the client secret ID, for a secret added to app "
    "'{client_id}'.",
    7000218: "The request body must contain the following parameter: 'client_assertion' or "
    "'client_secret'.",
    9001023: "The grant type is not supported over the /common or /consumers endpoints. Please use "
    "the /organizations or tenant-specific endpoint.",
    9002313: "Invalid request. Request is malformed or invalid.",
    9002325: "Proof Key for Code Exchange is required for cross-origin authorization code "
    "redemption.",
    9002326: "Cross-origin token redemption is permitted only for the 'Single-Page Application' "
    "client-type. Request origin: '{origin}'.",
    9002327: "Tokens issued for the 'Single-Page Application' client-type may only be redeemed "
    "via cross-origin requests.",
    28000: "Provided value for the input parameter scope is not valid because it contains more "
    "than one resource. Scope {scope} is not valid.",
}


def describe(code: int, **fields: str) -> str:
    template = MESSAGES.get(code, "Error.")
    try:
        text = template.format(**fields)
    except KeyError:
        text = template
    return f"AADSTS{code}: {text}"


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def token_error(
    status: int,
    error: str,
    code: int,
    suberror: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> JSONResponse:
    """The token endpoint's error body, as Entra returns it (`headers`: e.g. CORS for a SPA)."""
    trace, correlation, stamp = str(uuid.uuid4()), str(uuid.uuid4()), _stamp()
    body: dict[str, object] = {
        "error": error,
        "error_description": f"{describe(code, **fields)}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        body["suberror"] = suberror
    return JSONResponse(
        body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def redirect_error_params(error: str, code: int, state: str | None, **fields: str) -> str:
    params = {"error": error, "error_description": describe(code, **fields)}
    if state is not None:
        params["state"] = state
    return urlencode(params)


def error_page(code: int, status: int = 400, **fields: str) -> HTMLResponse:
    """Entra shows some authorize errors on its own page instead of redirecting (e.g. 50011)."""
    text = html.escape(describe(code, **fields))
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in to your account</title></head>
<body style="font-family:Segoe UI,Arial,sans-serif;max-width:40em;margin:3em auto">
<h1>Sorry, but we're having trouble signing you in.</h1>
<p id="error-message">{text}</p>
<p><small>Error code: AADSTS{code} · Microsoft 365 emulator</small></p>
</body></html>"""
    return HTMLResponse(body, status_code=status)
