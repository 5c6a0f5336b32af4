"""The Kubernetes REST semantics over the store: CRUD, patch, subresources, list paging and watch.

Independent of sockets: `Api.handle()` takes a parsed request and returns a `Response` (or a `WatchStream`),
so the HTTP layer stays small and the semantics can be called directly.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from ..common.http import Request
from . import admission, errors, patching, strategy
from .resources import ResourceType
from .routing import Target
from .selectors import (SelectorError, label_selector_from_object, object_fields, parse_field_selector,
                        parse_label_selector, supported_fields)
from .store import Store, Watcher, copy_of

SCALE = ResourceType("autoscaling", "v1", "scale", "Scale", True, "scale")
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass
class Response:
    status: int
    body: Any                      # JSON-able, or str for text/plain
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class WatchStream:
    watcher: Watcher
    timeout: float
    bookmarks: bool
    resource: ResourceType


Subhandler = Callable[[Request, Target], Response]


class Api:
    def __init__(self, store: Store, *, min_watch_timeout: float = 1800.0) -> None:
        self.store = store
        self.min_watch_timeout = min_watch_timeout
        self.subhandlers: dict[tuple[str, str], Subhandler] = {}   # (plural, subresource) -> handler

    # -- entry point -------------------------------------------------------------------------------

    def handle(self, request: Request, target: Target) -> Response | WatchStream:
        if target.subresource in ("status", "scale"):
            return self._status_or_scale(request, target)
        if target.subresource is not None:
            handler = self.subhandlers.get((target.resource.plural, target.subresource))
            if handler is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            return handler(request, target)
        method = request.method
        if target.name is None:
            if method == "GET":
                return self.watch(request, target) if request.flag("watch") else self.list(request, target)
            if method == "POST":
                return self.create(request, target)
            if method == "DELETE":
                return self.delete_collection(request, target)
        else:
            if method == "GET":
                return Response(200, self.store.get(target.resource, target.namespace, target.name))
            if method == "PUT":
                return self.update(request, target, require_rv_if_custom(target, self.decode_object(request, target)))
            if method == "PATCH":
                return self.patch(request, target)
            if method == "DELETE":
                return self.delete(request, target)
        raise errors.method_not_allowed()

    # -- decoding ----------------------------------------------------------------------------------

    @staticmethod
    def decode_json(request: Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise errors.bad_request(f"the object provided is unrecognized: {exc}") from None

    def decode_object(self, request: Request, target: Target, *, kind: str | None = None) -> dict:
        if "yaml" in request.content_type or "protobuf" in request.content_type:
            raise errors.unsupported_media_type("the body of the request was in an unknown format - accepted "
                                                "media types include: application/json")
        obj = self.decode_json(request)
        if not isinstance(obj, dict):
            raise errors.bad_request("the object provided is unrecognized (must be a JSON object)")
        resource = target.resource
        expected_kind = kind or resource.kind
        if obj.get("kind") not in (None, "", expected_kind):
            raise errors.bad_request(f'the object provided is unrecognized (kind "{obj.get("kind")}", '
                                     f'expected "{expected_kind}")')
        if kind is None:
            if obj.get("apiVersion") not in (None, "", resource.api_version):
                raise errors.bad_request(f'the API version in the data ({obj.get("apiVersion")}) does not match '
                                         f'the expected API version ({resource.api_version})')
            obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("the object provided is unrecognized: metadata must be an object")
        if resource.namespaced and kind is None:
            sent = meta.get("namespace")
            if target.namespace and sent and sent != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = target.namespace or sent or "default"
        if target.name and meta.get("name") not in (None, target.name):
            raise errors.bad_request("the name of the object does not match the name on the URL")
        if target.name:
            meta["name"] = target.name
        return obj

    # -- verbs -------------------------------------------------------------------------------------

    def create(self, request: Request, target: Target) -> Response:
        obj = self.decode_object(request, target)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        meta.pop("resourceVersion", None)
        meta.pop("uid", None)
        resource = target.resource
        admission.default(resource, obj)
        with self.store.lock:                     # allocations (ClusterIPs, NodePorts) and the write as one
            strategy.prepare_for_create(self.store, resource, obj)
            admission.validate(resource, obj)
            stored = self.store.create(resource, obj, dry_run=is_dry_run(request))
        return Response(201, stored)

    def update(self, request: Request, target: Target, obj: dict, *, dry_run: bool | None = None) -> Response:
        """PUT semantics: the main resource keeps the stored status; only metadata and spec come from the body."""
        resource = target.resource
        with self.store.lock:
            old = self.store.get(resource, target.namespace, target.name)
            if resource.has_status and "status" in old:
                obj["status"] = old["status"]
            elif resource.has_status:
                obj.pop("status", None)
            admission.default(resource, obj)
            strategy.prepare_for_update(self.store, resource, obj, old)
            admission.validate(resource, obj, old)
            dry = is_dry_run(request) if dry_run is None else dry_run
            return Response(200, self.store.replace(resource, obj, dry_run=dry))

    def patch(self, request: Request, target: Target) -> Response:
        resource = target.resource
        with self.store.lock:
            current = self.store.get(resource, target.namespace, target.name)
            patched = self.apply_patch(request, resource, current)
            patched.setdefault("metadata", {})
            if not isinstance(patched["metadata"], dict):
                raise errors.bad_request("metadata must be an object")
            patched["metadata"]["name"] = target.name
            if resource.namespaced:
                patched["metadata"]["namespace"] = target.namespace
            patched["kind"], patched["apiVersion"] = resource.kind, resource.api_version
            if "resourceVersion" not in patched["metadata"] or \
                    patched["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]:
                patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(request, target, patched)

    def apply_patch(self, request: Request, resource: ResourceType, current: dict) -> dict:
        kind = PATCH_TYPES.get(request.content_type)
        if kind is None or kind == "apply":
            raise errors.unsupported_media_type(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(t for t in PATCH_TYPES if not t.endswith('yaml'))}")
        body = self.decode_json(request)
        try:
            if kind == "json":
                if not isinstance(body, list):
                    raise patching.PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
                return patching.apply_json_patch(current, body)
            if not isinstance(body, dict):
                raise errors.bad_request("error decoding patch: the patch must be a JSON object")
            if kind == "merge":
                return patching.apply_merge_patch(current, body)
            return patching.apply_strategic_merge_patch(current, body, kind=resource.kind)
        except patching.StrategicMergeUnsupported:
            # custom resources: the patch types a CRD serves (negotiation.NewUnsupportedMediaTypeError)
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml") from None
        except patching.PatchError as exc:
            raise errors.ApiError(422, "Invalid", str(exc)) from None

    def delete(self, request: Request, target: Target) -> Response:
        options = self.decode_json(request) if request.body else {}
        options = options if isinstance(options, dict) else {}
        pre = options.get("preconditions") or {}
        propagation = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        dry = is_dry_run(request) or "All" in (options.get("dryRun") or [])
        gone = self.store.delete(target.resource, target.namespace, target.name, dry_run=dry,
                                 uid=pre.get("uid"), resource_version=pre.get("resourceVersion"),
                                 orphan=propagation == "Orphan")
        if target.resource.kind in RETURNS_DELETED_OBJECT:
            return Response(200, gone)
        # Most registries answer a Status naming what was deleted (genericregistry.Store.finalizeDelete).
        resource = target.resource
        details = {"name": target.name, **({"group": resource.group} if resource.group else {}),
                   "kind": resource.plural, "uid": gone["metadata"].get("uid")}
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": details})

    def delete_collection(self, request: Request, target: Target) -> Response:
        matches = self.matcher(request, target.resource)
        items, _ = self.store.list(target.resource, target.namespace, matches)
        for obj in items:
            meta = obj["metadata"]
            self.store.delete(target.resource, meta.get("namespace"), meta["name"], dry_run=is_dry_run(request))
        return Response(200, self.list_body(target.resource, items, self.store.resource_version))

    # -- list & watch ------------------------------------------------------------------------------

    def matcher(self, request: Request, resource: ResourceType) -> Callable[[dict], bool]:
        try:
            labels = parse_label_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"), supported=supported_fields(resource.kind),
                                          kind=resource.kind)
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        if labels.empty and not fields.requirements():
            return lambda obj: True
        kind = resource.kind
        return lambda obj: (labels.matches(obj["metadata"].get("labels"))
                            and fields.matches(object_fields(kind, obj)))

    def list(self, request: Request, target: Target) -> Response:
        resource = target.resource
        items, rv = self.store.list(resource, target.namespace, self.matcher(request, resource))
        token = request.query.get("continue")
        if token:
            try:
                start = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
            except (ValueError, TypeError):
                raise errors.bad_request("continue key is not valid: illegal base64 data") from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit = query_int(request.query.get("limit"), "limit")
        next_token, remaining = None, None
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            next_token = base64.urlsafe_b64encode(
                json.dumps([last.get("namespace", ""), last["name"]]).encode()).decode()
        return Response(200, self.list_body(resource, items, rv, next_token, remaining))

    @staticmethod
    def list_body(resource: ResourceType, items: list[dict], rv: int, token: str | None = None,
                  remaining: int | None = None) -> dict:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta, "items": items}

    def watch(self, request: Request, target: Target) -> WatchStream:
        timeout = query_int(request.query.get("timeoutSeconds"), "timeoutSeconds")
        watcher = self.store.watch(target.resource, target.namespace, self.matcher(request, target.resource),
                                   request.query.get("resourceVersion"))
        return WatchStream(watcher, float(timeout) if timeout else self.min_watch_timeout,
                           request.flag("allowWatchBookmarks"), target.resource)

    # -- status and scale --------------------------------------------------------------------------

    def _status_or_scale(self, request: Request, target: Target) -> Response:
        resource = target.resource
        if target.subresource == "scale":
            return self._scale(request, target)
        current = self.store.get(resource, target.namespace, target.name)
        if request.method == "GET":
            return Response(200, current)
        if request.method == "PUT":
            sent = require_rv_if_custom(target, self.decode_object(request, target))
        elif request.method == "PATCH":
            sent = self.apply_patch(request, resource, current)
        else:
            raise errors.method_not_allowed()
        updated = copy_of(current)
        updated["status"] = sent.get("status", {})
        rv = (sent.get("metadata") or {}).get("resourceVersion")
        updated["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
        return Response(200, self.store.replace(resource, updated, dry_run=is_dry_run(request)))

    def _scale(self, request: Request, target: Target) -> Response:
        resource = target.resource
        with self.store.lock:
            current = self.store.get(resource, target.namespace, target.name)
            scale = scale_of(current)
            if request.method == "GET":
                return Response(200, scale)
            if request.method == "PUT":
                sent = self.decode_object(request, target, kind="Scale")
            elif request.method == "PATCH":
                sent = self.apply_patch(request, SCALE, scale)
            else:
                raise errors.method_not_allowed()
            replicas = (sent.get("spec") or {}).get("replicas")
            updated = copy_of(current)
            updated["spec"]["replicas"] = replicas
            rv = (sent.get("metadata") or {}).get("resourceVersion")
            updated["metadata"]["resourceVersion"] = rv or current["metadata"]["resourceVersion"]
            admission.validate(resource, updated, current)
            stored = self.store.replace(resource, updated, dry_run=is_dry_run(request))
            return Response(200, scale_of(stored))


def scale_of(obj: dict) -> dict:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    selector = label_selector_from_object(obj["spec"].get("selector"))
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": obj["spec"].get("replicas", 0)},
        "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": str(selector)},
    }


# Kinds whose registry sets ReturnDeletedObject (or defers deletion): DELETE answers the object itself.
RETURNS_DELETED_OBJECT = frozenset({"Pod", "Service", "Namespace"})
# Groups served as custom resources (CRDs): their updates must carry a resourceVersion.
CUSTOM_GROUPS = frozenset({"cert-manager.io"})


def require_rv_if_custom(target: Target, obj: dict) -> dict:
    """The CRD strategy disallows unconditional updates: a PUT without metadata.resourceVersion is 422."""
    resource = target.resource
    if resource.group in CUSTOM_GROUPS and not obj["metadata"].get("resourceVersion"):
        raise errors.ApiError(
            422, "Invalid", f'{resource.plural}.{resource.group} "{target.name}" is invalid: metadata.resourceVersion: '
                            "Invalid value: 0x0: must be specified for an update",
            details={"name": target.name, "group": resource.group, "kind": resource.plural, "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update",
                 "field": "metadata.resourceVersion"}]})
    return obj


def is_dry_run(request: Request) -> bool:
    return request.query.get("dryRun") == "All"


def generate_name(prefix: str) -> str:
    import random
    import string
    return prefix + "".join(random.choices(string.ascii_lowercase + "bcdfghjklmnpqrstvwxz2456789", k=5))


def query_int(value: str | None, name: str) -> int | None:
    """A non-negative integer query parameter, or a 400 BadRequest naming it."""
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{value}"') from None
    if number < 0:
        raise errors.bad_request(f"{name} must be non-negative")
    return number
