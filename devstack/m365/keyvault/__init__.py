"""Key Vault emulator: the secrets REST API subset with soft-delete, on its own HTTPS port.

Auth as Azure does it: a request without a valid bearer token gets 401 with the challenge
`WWW-Authenticate: Bearer authorization="{authority}/{tid}", resource="https://vault.azure.net"`,
which is what makes `SecretClient` fetch a token (its first request carries no token and no body).
Any valid token of the vault's tenant for `https://vault.azure.net` may use the vault (no per-vault
RBAC). Dates are Unix seconds on the emulator clock.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.m365.directory import KEY_VAULT_RESOURCE
from devstack.m365.state import Emulator
from devstack.m365.tokens import InvalidToken

RECOVERABLE_DAYS = 90
MAX_RESULTS = 25  # Key Vault's maximum page size for secrets lists
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_API_VERSION = re.compile(r"^(7\.[0-9]+|20[0-9]{2}-[01][0-9]-[0-3][0-9])(-preview(\.[0-9]+)?)?$")


@dataclass
class Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    nbf: int | None
    exp: int | None
    created: int
    updated: int


@dataclass
class Secret:
    name: str
    versions: list[Version] = field(default_factory=list)  # oldest first
    deleted: int | None = None  # deletedDate while soft-deleted


@dataclass
class VaultState:
    secrets: dict[str, Secret] = field(default_factory=dict)  # key: lower-case name
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def build_app(emulator: Emulator) -> Starlette:
    state = VaultState()
    emulator.keyvault = state

    def vault_url(request: Request) -> str:
        return f"https://{request.url.netloc}"

    def now() -> int:
        return int(emulator.clock.timestamp())

    def challenge(message: str, code: str = "Unauthorized") -> Response:
        tid = emulator.vault_tenant_id() or "common"
        header = (
            f'Bearer authorization="{emulator.base_url}/{tid}", resource="{KEY_VAULT_RESOURCE}"'
        )
        return _error(401, code, message, {"WWW-Authenticate": header})

    def authenticate(request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        if not auth:
            return challenge("AKV10000: Request is missing a Bearer or PoP token.")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return challenge("AKV10001: Unsupported authentication scheme.")
        try:
            claims = emulator.tokens.verify(token.strip(), [KEY_VAULT_RESOURCE])
        except InvalidToken as exc:
            found = exc.claims
            messages = {
                "malformed": "AKV10000: Request is missing a Bearer or PoP token.",
                "bad_signature": "AKV10005: Invalid signature.",
                "expired": "AKV10022: Token expired.",
                "not_yet_valid": "AKV10023: Token not yet valid.",
                "wrong_audience": f"AKV10022: Invalid audience. Expected {KEY_VAULT_RESOURCE}, "
                f"found: {found.get('aud')}.",
                "wrong_issuer": f"AKV10032: Invalid issuer. Found: {found.get('iss')}.",
                "unknown_tenant": f"AKV10032: Invalid issuer. Found: {found.get('iss')}.",
                "revoked": "AKV10022: Token revoked.",
            }
            return challenge(messages[exc.reason])
        tid = emulator.vault_tenant_id()
        if claims.get("tid") != tid:
            # Azure: a token from another tenant is refused with the vault tenant's challenge.
            expected = emulator.tokens.issuer(tid or "")
            return challenge(
                f"AKV10032: Invalid issuer. Expected one of {expected}, found {claims.get('iss')}."
            )
        return None

    def check_api_version(request: Request) -> Response | None:
        version = request.query_params.get("api-version")
        if not version:
            return _error(400, "BadParameter", "api-version query parameter is required")
        if not _API_VERSION.match(version):
            return _error(
                400, "BadParameter", f"The specified version ({version}) is not recognized."
            )
        return None

    def bundle(request: Request, secret: Secret, v: Version) -> dict[str, Any]:
        base = vault_url(request)
        body: dict[str, Any] = {
            "value": v.value,
            "id": f"{base}/secrets/{secret.name}/{v.version}",
            "attributes": attributes(v),
        }
        if v.content_type is not None:
            body["contentType"] = v.content_type
        if v.tags is not None:
            body["tags"] = v.tags
        return body

    def attributes(v: Version) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "enabled": v.enabled,
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": RECOVERABLE_DAYS,
        }
        if v.nbf is not None:
            attrs["nbf"] = v.nbf
        if v.exp is not None:
            attrs["exp"] = v.exp
        return attrs

    def item(request: Request, secret: Secret, v: Version, *, with_version: bool) -> dict[str, Any]:
        base = vault_url(request)
        body: dict[str, Any] = {
            "id": f"{base}/secrets/{secret.name}" + (f"/{v.version}" if with_version else ""),
            "attributes": attributes(v),
        }
        if v.content_type is not None:
            body["contentType"] = v.content_type
        if v.tags is not None:
            body["tags"] = v.tags
        return body

    def deleted_fields(request: Request, secret: Secret) -> dict[str, Any]:
        assert secret.deleted is not None
        return {
            "recoveryId": f"{vault_url(request)}/deletedsecrets/{secret.name}",
            "deletedDate": secret.deleted,
            "scheduledPurgeDate": secret.deleted + RECOVERABLE_DAYS * 86400,
        }

    def deleted_bundle(request: Request, secret: Secret) -> dict[str, Any]:
        """A DeletedSecretBundle: the latest version and the deletion fields, never the value."""
        body = {**bundle(request, secret, secret.versions[-1]), **deleted_fields(request, secret)}
        body.pop("value", None)
        return body

    def not_found(name: str, version: str | None = None) -> Response:
        what = f"{name}/{version}" if version else name
        return _error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {what} was not found in this key vault. If you recently "
            "deleted this secret you may be able to recover it using the correct recovery "
            "command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
        )

    def deleted_not_found(name: str) -> Response:
        return _error(404, "SecretNotFound", f"Deleted Secret not found: {name}")

    def page(request: Request, values: list[dict[str, Any]]) -> Response:
        try:
            top = int(request.query_params.get("maxresults", MAX_RESULTS))
            skip = int(request.query_params.get("$skiptoken", "0") or 0)
        except ValueError:
            return _error(400, "BadParameter", "invalid maxresults or $skiptoken")
        if not 1 <= top <= MAX_RESULTS:
            return _error(
                400, "BadParameter", f"invalid maxresults: must be between 1 and {MAX_RESULTS}"
            )
        chunk = values[skip : skip + top]
        next_link = None
        if skip + top < len(values):
            query = {
                "api-version": request.query_params["api-version"],
                "$skiptoken": str(skip + top),
                "maxresults": str(top),
            }
            next_link = f"{vault_url(request)}{request.url.path}?{urlencode(query)}"
        return JSONResponse({"value": chunk, "nextLink": next_link})

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            refused = authenticate(request) or check_api_version(request)
            if refused is not None:
                return refused
            result: Response = await handler(request)
            return result

        return endpoint

    async def set_secret(request: Request) -> Response:
        name = request.path_params["name"]
        if not _NAME.match(name):
            return _error(
                400,
                "BadParameter",
                "The request URI contains an invalid name: " + name,
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "BadParameter", "The request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return _error(400, "BadParameter", "Property 'value' is required.")
        attrs = body.get("attributes") or {}
        ts = now()
        with state.lock:
            secret = state.secrets.get(name.lower())
            if secret is not None and secret.deleted is not None:
                return _error(
                    409,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its name "
                    "cannot be reused; in this state, the secret can only be recovered or purged.",
                )
            if secret is None:
                secret = state.secrets[name.lower()] = Secret(name)
            version = Version(
                version=uuid.uuid4().hex,
                value=body["value"],
                content_type=body.get("contentType"),
                tags=body.get("tags"),
                enabled=bool(attrs.get("enabled", True)),
                nbf=attrs.get("nbf"),
                exp=attrs.get("exp"),
                created=ts,
                updated=ts,
            )
            secret.versions.append(version)
        return JSONResponse(bundle(request, secret, version))

    def live(name: str) -> Secret | None:
        secret = state.secrets.get(name.lower())
        return secret if secret is not None and secret.deleted is None else None

    async def get_secret(request: Request) -> Response:
        name = request.path_params["name"]
        wanted = request.path_params.get("version", "")
        secret = live(name)
        if secret is None or not secret.versions:
            return not_found(name, wanted or None)
        if not wanted:
            return JSONResponse(bundle(request, secret, secret.versions[-1]))
        for v in secret.versions:
            if v.version == wanted:
                if not v.enabled:
                    return _error(
                        403, "Forbidden", "Operation get is not allowed on a disabled secret."
                    )
                return JSONResponse(bundle(request, secret, v))
        return not_found(name, wanted)

    async def update_secret(request: Request) -> Response:
        name, wanted = request.path_params["name"], request.path_params.get("version", "")
        secret = live(name)
        if secret is None:
            return not_found(name, wanted or None)
        target = (
            next((v for v in secret.versions if v.version == wanted), None)
            if wanted
            else secret.versions[-1]
        )
        if target is None:
            return not_found(name, wanted)
        body = await request.json()
        attrs = body.get("attributes") or {}
        if "contentType" in body:
            target.content_type = body["contentType"]
        if "tags" in body:
            target.tags = body["tags"]
        for key in ("enabled", "nbf", "exp"):
            if key in attrs:
                setattr(target, key, attrs[key])
        target.updated = now()
        return JSONResponse(item(request, secret, target, with_version=True))

    async def list_secrets(request: Request) -> Response:
        with state.lock:
            values = [
                item(request, s, s.versions[-1], with_version=False)
                for s in sorted(state.secrets.values(), key=lambda s: s.name.lower())
                if s.deleted is None and s.versions
            ]
        return page(request, values)

    async def list_versions(request: Request) -> Response:
        name = request.path_params["name"]
        secret = live(name)
        if secret is None:
            return not_found(name)
        values = [item(request, secret, v, with_version=True) for v in secret.versions]
        return page(request, values)

    async def delete_secret(request: Request) -> Response:
        name = request.path_params["name"]
        with state.lock:
            secret = live(name)
            if secret is None:
                return not_found(name)
            secret.deleted = now()
        return JSONResponse(deleted_bundle(request, secret))

    def deleted(name: str) -> Secret | None:
        secret = state.secrets.get(name.lower())
        return secret if secret is not None and secret.deleted is not None else None

    async def get_deleted(request: Request) -> Response:
        name = request.path_params["name"]
        secret = deleted(name)
        if secret is None:
            return deleted_not_found(name)
        return JSONResponse(deleted_bundle(request, secret))

    async def list_deleted(request: Request) -> Response:
        with state.lock:
            values = []
            for s in sorted(state.secrets.values(), key=lambda s: s.name.lower()):
                if s.deleted is not None:
                    values.append(
                        {
                            **item(request, s, s.versions[-1], with_version=False),
                            **deleted_fields(request, s),
                        }
                    )
        return page(request, values)

    async def recover(request: Request) -> Response:
        name = request.path_params["name"]
        with state.lock:
            secret = deleted(name)
            if secret is None:
                return deleted_not_found(name)
            secret.deleted = None
        body = bundle(request, secret, secret.versions[-1])
        body.pop("value", None)
        return JSONResponse(body)

    async def purge(request: Request) -> Response:
        name = request.path_params["name"]
        with state.lock:
            secret = deleted(name)
            if secret is None:
                return deleted_not_found(name)
            del state.secrets[name.lower()]
        return Response(status_code=204)

    routes = [
        Route("/secrets", guarded(list_secrets), methods=["GET"]),
        Route("/secrets/{name}", guarded(set_secret), methods=["PUT"]),
        Route("/secrets/{name}", guarded(delete_secret), methods=["DELETE"]),
        Route("/secrets/{name}", guarded(get_secret), methods=["GET"]),
        Route("/secrets/{name}/", guarded(get_secret), methods=["GET"]),
        Route("/secrets/{name}/versions", guarded(list_versions), methods=["GET"]),
        Route("/secrets/{name}/{version}", guarded(get_secret), methods=["GET"]),
        Route("/secrets/{name}/{version}", guarded(update_secret), methods=["PATCH"]),
        Route("/secrets/{name}/", guarded(update_secret), methods=["PATCH"]),
        Route("/deletedsecrets", guarded(list_deleted), methods=["GET"]),
        Route("/deletedsecrets/{name}", guarded(get_deleted), methods=["GET"]),
        Route("/deletedsecrets/{name}", guarded(purge), methods=["DELETE"]),
        Route("/deletedsecrets/{name}/recover", guarded(recover), methods=["POST"]),
    ]
    return Starlette(routes=routes)
