"""The ARM front door and the Microsoft.ContainerService handlers: routing (ARM paths are case-insensitive),
api-version, the subscription and resource group, ARM's request-id and rate-limit headers, and each
operation's answer. Writes start long-running operations (`operations.py`) and answer at once, as ARM does."""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ..common.http import Request
from . import errors, validation
from .errors import ArmError
from .operations import Operation
from .resources import AgentPool, ManagedCluster, new_etag, pool_digits

if TYPE_CHECKING:
    from .server import AzureSandbox

API_VERSION = "2026-08-01"            # azure-mgmt-containerservice's default
API_VERSIONS = frozenset({"2024-09-01", "2024-10-01", "2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01",
                          "2025-05-01", "2025-06-01", "2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01",
                          API_VERSION})
READ_LIMIT, WRITE_LIMIT = 12000, 1200  # per subscription per hour: what x-ms-ratelimit-remaining-* counts down
_SUB = r"^/subscriptions/(?P<sub>[^/]+)"
_CLUSTER = _SUB + r"/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.containerservice/managedclusters/(?P<name>[^/]+)"
_LOCATION = _SUB + r"/providers/microsoft\.containerservice/locations/(?P<loc>[^/]+)"


@dataclass
class Answer:
    status: int
    body: Any = None                   # None: no body (204, 202 without one)
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["AzureSandbox", Request, dict], Answer]


def serve(azure: "AzureSandbox", request: Request) -> Answer:
    """Route an authenticated ARM request to its handler."""
    handlers, match = _route(request.path)
    if handlers is None:
        raise errors.invalid_resource_type(request.path, request.query.get("api-version", ""))
    handler = handlers.get(request.method)
    if handler is None:
        raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method "
                                                f"'{request.method}'.")
    _check_api_version(request, match)
    _check_subscription(azure, match["sub"])
    return handler(azure, request, match)


def _route(path: str) -> tuple[dict[str, Handler] | None, dict]:
    for pattern, handlers in ROUTES:
        found = pattern.match(path)
        if found:
            return handlers, found.groupdict()
    return None, {}


def _check_api_version(request: Request, match: dict) -> None:
    version = request.query.get("api-version")
    if not version:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if "loc" not in match and version not in API_VERSIONS:
        raise ArmError(400, "NoRegisteredProviderFound",
                       f"No registered resource provider found for location 'westeurope' and API version '{version}' "
                       f"for type 'managedClusters'. The supported api-versions are "
                       f"'{', '.join(sorted(API_VERSIONS))}'.")


def _check_subscription(azure: "AzureSandbox", subscription: str) -> None:
    if subscription.lower() != azure.config.subscription_id.lower():
        raise errors.subscription_not_found(subscription)


# -- ARM's headers ------------------------------------------------------------------------------------

class RateLimits:
    """What ARM's x-ms-ratelimit-remaining-subscription-reads/writes headers count down (not enforced: use a
    429 fault to throttle)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hour = int(time.time() // 3600)
        self._used = {"reads": 0, "writes": 0}

    def take(self, kind: str) -> int:
        with self._lock:
            hour = int(time.time() // 3600)
            if hour != self._hour:
                self._hour, self._used = hour, {"reads": 0, "writes": 0}
            self._used[kind] += 1
            return max(0, (READ_LIMIT if kind == "reads" else WRITE_LIMIT) - self._used[kind])


def arm_headers(azure: "AzureSandbox", request: Request, verb: str) -> dict[str, str]:
    kind = "reads" if verb in ("get", "list") else "writes"
    throttled = request.fault is not None and request.fault.status == 429
    remaining = 0 if throttled else azure.rate_limits.take(kind)
    request_id = str(uuid.uuid4())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {"x-ms-request-id": request_id,
            "x-ms-correlation-request-id": request.headers.get("x-ms-correlation-request-id") or request_id,
            "x-ms-routing-request-id": f"{azure.config.location.upper()}:{stamp}:{request_id}",
            f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}


# -- clusters -------------------------------------------------------------------------------------------

def _cluster(azure: "AzureSandbox", match: dict) -> ManagedCluster:
    if not azure.has_resource_group(match["rg"]):
        raise errors.resource_group_not_found(match["rg"])
    cluster = azure.cluster(match["rg"], match["name"])
    if cluster is None:
        raise errors.resource_not_found("managedClusters", match["name"], match["rg"])
    return cluster


def list_clusters(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    group = match.get("rg")
    if group is not None and not azure.has_resource_group(group):
        raise errors.resource_group_not_found(group)
    with azure.lock:
        value = [c.body() for c in azure.clusters() if group is None or c.resource_group.lower() == group.lower()]
    return Answer(200, {"value": value})


def get_cluster(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        return Answer(200, _cluster(azure, match).body())


def _credentials(role: str) -> Handler:
    def handler(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
        cluster = _cluster(azure, match)
        kubeconfig = azure.kubeconfig_for(cluster, role)
        value = base64.b64encode(yaml.safe_dump(kubeconfig, sort_keys=False).encode()).decode()
        return Answer(200, {"kubeconfigs": [{"name": f"cluster{role.capitalize()}", "value": value}]})
    return handler


def rotate_certificates(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        cluster = _cluster(azure, match)
        _refuse_if_busy(azure, cluster, None)
        operation = azure.provisioner.rotate_certificates(cluster)
    return Answer(202, None, {"Location": _operation_url(azure, request, operation, "operationresults")})


# -- agent pools ----------------------------------------------------------------------------------------

def _pool(cluster: ManagedCluster, name: str) -> AgentPool:
    pool = cluster.pool(name)
    if pool is None:
        raise errors.pool_not_found(name, cluster.name)
    return pool


def list_pools(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        cluster = _cluster(azure, match)
        return Answer(200, {"value": [p.body(cluster) for p in cluster.pools.values()]})


def get_pool(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        cluster = _cluster(azure, match)
        return Answer(200, _pool(cluster, match["pool"]).body(cluster))


def put_pool(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    """Create or replace a pool: 201 Creating / 200 Updating, with the operation to poll."""
    body = _json_body(request)
    name = match["pool"]
    with azure.lock:
        cluster = _cluster(azure, match)
        existing = cluster.pool(name)
        _check_preconditions(request, existing.etag if existing else None, f"agent pool '{name}'")
        _refuse_if_busy(azure, cluster, name)
        properties = validation.pool_properties(name, body, cluster, existing)
        if existing is not None:
            previous, pool = dict(existing.properties), existing
            pool.properties, pool.etag = properties, new_etag()
        else:
            previous, pool = None, AgentPool(name, properties, pool_digits(cluster.id, name))
            cluster.pools[name] = pool
        operation = azure.provisioner.put_pool(cluster, pool, previous)
        answer = pool.body(cluster)
    return Answer(201 if previous is None else 200, answer,
                  {"Azure-AsyncOperation": _operation_url(azure, request, operation, "operations")})


def upgrade_node_image(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        cluster = _cluster(azure, match)
        pool = _pool(cluster, match["pool"])
        _refuse_if_busy(azure, cluster, pool.name)
        pool.etag = new_etag()
        operation = azure.provisioner.upgrade_node_image(cluster, pool)
        answer = pool.body(cluster)
    return Answer(202, answer, {"Azure-AsyncOperation": _operation_url(azure, request, operation, "operations")})


def delete_pool(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    with azure.lock:
        cluster = _cluster(azure, match)
        pool = cluster.pool(match["pool"])
        _check_preconditions(request, pool.etag if pool else None, f"agent pool '{match['pool']}'")
        if pool is None:
            return Answer(204)
        _refuse_if_busy(azure, cluster, pool.name)
        if pool.mode == "System" and not any(p.mode == "System" for p in cluster.pools.values() if p is not pool):
            raise validation.must_keep_system_pool()
        operation = azure.provisioner.delete_pool(cluster, pool, request.flag("ignore-pod-disruption-budget"))
    return Answer(202, None, {"Location": _operation_url(azure, request, operation, "operationresults"),
                              "Azure-AsyncOperation": _operation_url(azure, request, operation, "operations")})


def _refuse_if_busy(azure: "AzureSandbox", cluster: ManagedCluster, pool: str | None) -> None:
    busy = azure.operations.in_flight(cluster.key, pool)
    if busy is not None:
        raise errors.operation_not_allowed(busy.name)


def _check_preconditions(request: Request, current: str | None, what: str) -> None:
    """If-Match (a stale eTag, or `*` for a missing resource) and If-None-Match `*` (an existing one): 412."""
    if_match, if_none_match = request.headers.get("If-Match"), request.headers.get("If-None-Match")
    if if_match is not None:
        sent = _unquote(if_match)
        if current is None or (sent != "*" and sent != current):
            raise errors.precondition_failed(sent, current, what)
    if if_none_match is not None and _unquote(if_none_match) == "*" and current is not None:
        raise errors.precondition_failed("*", current, what)


def _unquote(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"').strip("'")


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.bad_json(str(exc)) from None


# -- long-running operations ----------------------------------------------------------------------------

def _operation_url(azure: "AzureSandbox", request: Request, operation: Operation, kind: str) -> str:
    version = request.query.get("api-version", API_VERSION)
    return (f"{azure.url}/subscriptions/{azure.config.subscription_id}/providers/Microsoft.ContainerService/"
            f"locations/{azure.config.location}/{kind}/{operation.id}?api-version={version}")


def _operation(azure: "AzureSandbox", match: dict) -> Operation:
    operation = azure.operations.get(match["op"])
    if operation is None:
        raise ArmError(404, "NotFound", f"Operation '{match['op']}' was not found.")
    return operation


def operation_status(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    """The Azure-AsyncOperation URL: 200 with the status, every time (no Retry-After)."""
    return Answer(200, _operation(azure, match).status_body())


def operation_result(azure: "AzureSandbox", request: Request, match: dict) -> Answer:
    """The Location URL: 202 while running, 204 once it succeeded, ARM's error once it failed."""
    operation = _operation(azure, match)
    if not operation.done.is_set():
        return Answer(202, None, {"Location": _operation_url(azure, request, operation, "operationresults")})
    if operation.status == "Succeeded":
        return Answer(204)
    error = operation.error or {"code": "OperationFailed", "message": "The operation failed."}
    raise ArmError(400, error["code"], error["message"])


ROUTES: list[tuple[re.Pattern, dict[str, Handler]]] = [(re.compile(p, re.IGNORECASE), h) for p, h in (
    (_SUB + r"/providers/microsoft\.containerservice/managedclusters$", {"GET": list_clusters}),
    (_SUB + r"/resourcegroups/(?P<rg>[^/]+)/providers/microsoft\.containerservice/managedclusters$",
     {"GET": list_clusters}),
    (_CLUSTER + "$", {"GET": get_cluster}),
    (_CLUSTER + "/listclusterusercredential$", {"POST": _credentials("user")}),
    (_CLUSTER + "/listclusteradmincredential$", {"POST": _credentials("admin")}),
    (_CLUSTER + "/rotateclustercertificates$", {"POST": rotate_certificates}),
    (_CLUSTER + "/agentpools$", {"GET": list_pools}),
    (_CLUSTER + r"/agentpools/(?P<pool>[^/]+)$", {"GET": get_pool, "PUT": put_pool, "DELETE": delete_pool}),
    (_CLUSTER + r"/agentpools/(?P<pool>[^/]+)/upgradenodeimageversion$", {"POST": upgrade_node_image}),
    (_LOCATION + r"/operations/(?P<op>[^/]+)$", {"GET": operation_status}),
    (_LOCATION + r"/operationresults/(?P<op>[^/]+)$", {"GET": operation_result}),
)]
