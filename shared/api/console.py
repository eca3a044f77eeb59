"""The admin console's static side: its sign-in configuration and the files of its bundle.

The console (issue 13, code in `console/`) is a single-page app built into `console/dist/` and
served by this Functions app under `/api/console/`; it signs people in with MSAL Browser and calls
the public API with their tokens (shared/api/auth.py). Everything here is anonymous and holds no
data: `config_document` says where to sign in (no secrets), `serve` answers for one file.

Files: `index.html` is `Cache-Control: no-cache` (a deploy is seen at once); Vite's hashed files
under `assets/` never change, so they are cached for a year (`immutable`); anything else is
`no-cache`. Every file gets the security headers: a Content-Security-Policy that allows scripts and
styles from this origin only, network calls to this origin and the sign-in authority (token
endpoint, discovery, keys: MSAL Browser's cross-origin requests), frames of the authority only
(MSAL's silent renewal) and no one framing the console; `nosniff`; no referrer (authorization
codes come back in the URL). A path that tries to leave the bundle is a 400; a file that is not
there a 404 (problem+json). If the bundle was never built, `/api/console/` still answers 200 with
a page that says how to build it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.core.errors import FieldError, NotFound, ValidationFailed

if TYPE_CHECKING:
    from shared.core.settings import Settings

# The repository (and deployment package) root holds console/dist next to function_app.py.
DIST = Path(__file__).resolve().parents[2] / "console" / "dist"
# The delegated scope of the API (shared/api/auth.py ACCESS_AS_USER), as `{audience}/{scope}`.
SCOPE = "access_as_user"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}
NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BookingBridge console: not built</title></head>
<body><main>
<h1>The BookingBridge console has not been built</h1>
<p>This app serves the admin console from <code>console/dist/</code>, which is missing.</p>
<p>Build it from the repository root with <code>make console</code>
(or <code>npm ci &amp;&amp; npm run build</code> in <code>console/</code>), then reload this page.
A deployment package built with <code>make</code> or <code>azd</code> includes it.</p>
<p>The HTTP API works without it: <a href="../openapi.json">OpenAPI description</a>.</p>
</main></body></html>
"""


@dataclass(frozen=True)
class StaticFile:
    """What the HTTP trigger sends back (status, body, headers including Content-Type)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream")


def config_document(settings: Settings) -> dict[str, Any]:
    """`GET /api/console/config.json`: what MSAL Browser needs to sign an admin in. No secrets."""
    authority_host = settings.authority_host.rstrip("/")
    return {
        "clientId": settings.client_id,
        "authority": f"{authority_host}/{settings.api_tenant_id}",
        "scopes": [f"{settings.api_audience.rstrip('/')}/{SCOPE}"],
        "redirectUri": redirect_uri(settings),
        "apiBase": "/api",
        # MSAL Browser compares host[:port] with these to trust the authority without discovery.
        "knownAuthorities": [urlsplit(authority_host).netloc],
    }


def redirect_uri(settings: Settings) -> str:
    """The SPA redirect URI registered on the app: the console's own page, `/api/console/`
    (BB_PUBLIC_BASE_URL already ends with `/api`)."""
    return f"{settings.public_base_url.rstrip('/')}/console/"


def security_headers(authority_origin: str | None) -> dict[str, str]:
    """Headers on every console file; `authority_origin` is where sign-in happens (None: unknown,
    e.g. the app settings are broken: then only this origin)."""
    remote = f" {authority_origin}" if authority_origin else ""
    frames = authority_origin or "'none'"
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self'{remote}",
            f"frame-src {frames}",
            "base-uri 'self'",
            "form-action 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def authority_origin(settings: Settings) -> str:
    parts = urlsplit(settings.authority_host)
    return f"{parts.scheme}://{parts.netloc}"


def safe_path(path: str) -> PurePosixPath:
    """The route's `{*path}` as a relative path inside the bundle; 400 if it tries to leave it."""
    if "\\" in path or "\x00" in path or path.startswith("/"):
        raise _bad_path()
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." or p.startswith("~") for p in parts):
        raise _bad_path()
    return PurePosixPath(*parts) if parts else PurePosixPath("index.html")


def serve(
    path: str,
    *,
    request_path: str,
    authority: str | None,
    dist: Path | None = None,
) -> StaticFile:
    """The response for `GET /api/console/{path}`; `request_path` is the URL's path as sent
    (`/api/console` without the slash is redirected to `/api/console/`, so the bundle's
    relative URLs resolve below it)."""
    headers = security_headers(authority)
    if not path.strip("/") and not request_path.endswith("/"):
        last = request_path.rstrip("/").rsplit("/", 1)[-1] or "console"
        return StaticFile(301, b"", {**headers, "Location": f"{last}/", "Cache-Control": NO_CACHE})
    relative = safe_path(path)
    root = (dist or DIST).resolve()
    if relative == PurePosixPath("index.html") and not (root / "index.html").is_file():
        return StaticFile(
            200,
            NOT_BUILT.encode(),
            {**headers, "Content-Type": CONTENT_TYPES[".html"], "Cache-Control": NO_CACHE},
        )
    target = (root / relative).resolve()
    # resolve() follows symlinks: a link pointing out of the bundle is refused like `..` is.
    if not target.is_relative_to(root):
        raise _bad_path()
    if not target.is_file():
        raise NotFound("No such file in the console", reason="not_found")
    content_type = CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream")
    hashed = relative.parts[0] == "assets" and len(relative.parts) > 1
    return StaticFile(
        200,
        target.read_bytes(),
        {
            **headers,
            "Content-Type": content_type,
            "Cache-Control": IMMUTABLE if hashed else NO_CACHE,
        },
    )


def _bad_path() -> ValidationFailed:
    return ValidationFailed(
        [FieldError("path", "must stay inside the console bundle")],
        "The path is not a file of the console",
    )
