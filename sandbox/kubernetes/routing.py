"""Parse a Kubernetes API path into what it addresses."""
from __future__ import annotations

from dataclasses import dataclass

from . import errors
from .resources import ResourceType, lookup


@dataclass(frozen=True)
class Target:
    resource: ResourceType
    namespace: str | None      # None: cluster-scoped, or a list across all namespaces
    name: str | None           # None: the collection
    subresource: str | None


def parse_resource_path(path: str) -> Target | None:
    """Map `/api/v1/namespaces/ns/pods/x/log` and friends to a Target; None if the path is not a resource path."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
    if len(rest) > 3 and sub != "proxy":       # services/NAME/proxy/PATH... carries the proxied path
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    resource = lookup(group, version, plural)
    if resource is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    if namespace is not None and not resource.namespaced:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    if sub is not None and resource.subresource(sub) is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    return Target(resource, namespace, name, sub)


def k8s_verb(method: str, target: Target | None, watch: bool) -> str:
    """The Kubernetes verb of a request, as audit logs and RBAC name it."""
    if target is None:
        return method.lower()
    if method == "GET":
        if watch:
            return "watch"
        return "get" if target.name else "list"
    if method == "DELETE" and not target.name:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())
