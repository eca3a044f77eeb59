"""Scope strings as Entra reads them: short names mean Graph, `<resource>/<name>`, `/.default`."""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.m365.directory import (
    GRAPH_DELEGATED,
    GRAPH_RESOURCE,
    KEY_VAULT_DELEGATED,
    OIDC_SCOPES,
    App,
    Directory,
    Resource,
)


class ScopeError(Exception):
    def __init__(self, kind: str, value: str) -> None:
        super().__init__(value)
        self.kind = kind  # "unknown_resource" | "unknown_scope"
        self.value = value


@dataclass
class ResourceRequest:
    resource: Resource
    names: set[str] = field(default_factory=set)  # permission names without the prefix
    default: bool = False  # `<resource>/.default` was asked


@dataclass
class ScopeRequest:
    oidc: set[str]
    resources: list[ResourceRequest]  # in request order: the first one names the token audience

    @property
    def resource_count(self) -> int:
        return len(self.resources)


def parse(scope: str, directory: Directory, tenant_id: str | None) -> ScopeRequest:
    oidc: set[str] = set()
    by_key: dict[str, ResourceRequest] = {}
    order: list[ResourceRequest] = []
    for raw in scope.split():
        if raw in OIDC_SCOPES:
            oidc.add(raw)
            continue
        if "/" in raw:
            prefix, _, name = raw.rpartition("/")
        else:
            prefix, name = GRAPH_RESOURCE, raw  # short names mean Microsoft Graph
        resource = directory.resolve_resource(prefix, tenant_id)
        if resource is None:
            raise ScopeError("unknown_resource", prefix)
        request = by_key.get(resource.key)
        if request is None:
            request = by_key[resource.key] = ResourceRequest(resource)
            order.append(request)
        if name == ".default":
            request.default = True
        elif name in known_names(resource):
            request.names.add(name)
        else:
            raise ScopeError("unknown_scope", raw)
    return ScopeRequest(oidc, order)


def known_names(resource: Resource) -> set[str]:
    if resource.kind == "graph":
        return set(GRAPH_DELEGATED)
    if resource.kind == "keyvault":
        return set(KEY_VAULT_DELEGATED)
    assert resource.app is not None
    return set(resource.app.exposed_scopes)


def admin_only(resource: Resource, name: str) -> bool:
    """Only an admin may consent: Graph's admin-only scopes, an app's `type: Admin` scopes."""
    if resource.app is not None:
        return name in resource.app.admin_scopes
    return resource.kind == "graph" and GRAPH_DELEGATED.get(name, False)


def wanted_delegated(request: ResourceRequest, client: App) -> set[str]:
    """The delegated permissions a request means (`.default` = the registration's static list)."""
    names = set(request.names)
    if request.default:
        names |= {
            n
            for n in client.required_delegated.get(request.resource.key, set())
            if n not in OIDC_SCOPES
        }
    return names


def display(resource: Resource, names: set[str]) -> list[str]:
    """Scope strings as Entra returns them: Graph's short, others `<resource>/<name>`."""
    if resource.kind == "graph":
        return sorted(names)
    prefix = resource.audience
    if resource.app is not None and resource.app.identifier_uris:
        prefix = resource.app.identifier_uris[0]
    return [f"{prefix}/{n}" for n in sorted(names)]
