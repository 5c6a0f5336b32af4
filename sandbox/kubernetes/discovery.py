"""Discovery documents (`/version`, `/api`, `/apis`, group versions) and the OpenAPI v3 index kubectl reads."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import GROUP_VERSIONS, RESOURCES, ResourceType, resources_in

KUBERNETES_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-sandbox", "gitCommit": "sandbox",
                      "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                      "compiler": "gc", "platform": "linux/amd64"}

# Extra group versions served only for subresource kinds (Scale, Eviction).
EXTRA_GROUP_VERSIONS: dict[str, tuple[str, ...]] = {}


def _versions(group: str) -> tuple[str, ...]:
    return GROUP_VERSIONS.get(group, ()) + EXTRA_GROUP_VERSIONS.get(group, ())


def core_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def group_doc(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in _versions(group)]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict[str, Any]:
    groups = [g for g in list(GROUP_VERSIONS) + list(EXTRA_GROUP_VERSIONS) if g]
    unique = list(dict.fromkeys(groups))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_doc(g) for g in unique]}


def group_detail(group: str) -> dict[str, Any] | None:
    if group not in GROUP_VERSIONS and group not in EXTRA_GROUP_VERSIONS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **group_doc(group)}


def _entries(resource: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"name": resource.plural, "singularName": resource.singular,
                            "namespaced": resource.namespaced, "kind": resource.kind, "verbs": list(resource.verbs),
                            "storageVersionHash": hashlib.sha256(resource.plural.encode()).hexdigest()[:11]}
    if resource.short_names:
        main["shortNames"] = list(resource.short_names)
    if resource.categories:
        main["categories"] = list(resource.categories)
    entries = [main]
    for sub in resource.subresources:
        entry: dict[str, Any] = {"name": f"{resource.plural}/{sub.name}", "singularName": "",
                                 "namespaced": resource.namespaced, "kind": sub.kind or resource.kind,
                                 "verbs": list(sub.verbs)}
        if sub.group:
            entry["group"], entry["version"] = sub.group, sub.version
        entries.append(entry)
    return entries


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    if version not in _versions(group):
        return None
    entries = [e for r in resources_in(group, version) for e in _entries(r)]
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


# -- OpenAPI v3 ---------------------------------------------------------------------------------------
# kubectl reads /openapi/v3 to learn whether the server validates fields itself (the `fieldValidation`
# query parameter); when it does, kubectl skips client-side schema validation. The documents below list
# each resource's paths with that parameter and the group-version-kind extension kubectl keys on.

def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _openapi_doc(group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
              {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
    for resource in resources_in(group, version):
        gvk = {"group": group, "version": version, "kind": resource.kind}
        prefix = "/" + _gv_path(group, version) + ("/namespaces/{namespace}" if resource.namespaced else "")
        op = {"parameters": params, "x-kubernetes-group-version-kind": gvk,
              "responses": {"200": {"description": "OK"}}}
        paths[f"{prefix}/{resource.plural}"] = {"post": op, "get": {**op, "x-kubernetes-action": "list"}}
        paths[f"{prefix}/{resource.plural}/{{name}}"] = {"put": op, "patch": op, "get": op, "delete": op}
        schema_name = f"sandbox.{group or 'core'}.{version}.{resource.kind}"
        schemas[schema_name] = {"type": "object", "x-kubernetes-group-version-kind": [gvk]}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_root() -> dict[str, Any]:
    paths = {}
    for group, versions in GROUP_VERSIONS.items():
        for version in versions:
            path = _gv_path(group, version)
            digest = hashlib.sha256(json.dumps(_openapi_doc(group, version), sort_keys=True).encode()).hexdigest()
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest[:32].upper()}"}
    return {"paths": paths}


def openapi_group(path: str) -> dict[str, Any] | None:
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    if version not in GROUP_VERSIONS.get(group, ()):
        return None
    return _openapi_doc(group, version)


__all__ = ["RESOURCES", "core_versions", "group_list", "group_detail", "resource_list", "openapi_root",
           "openapi_group", "KUBERNETES_VERSION"]
