"""Faults in front of a service: errors or latency on its service-proxy path, injected through the
sandbox's fault rules (`/_sandbox/faults`). Only the sandbox can do this; on a real cluster a service
mesh or Chaos Mesh's HTTPChaos would, so the drill refuses the fault there before any write."""
from __future__ import annotations

from kubernetes.client import ApiClient
from prefect import task
from pydantic import BaseModel

from ..calls import TASK_RETRIES, call, retry_if_transient
from ..errors import PermanentError, TargetNotFound

FAULTS = "/_sandbox/faults"


class ProxyFault(BaseModel):
    """What `add_proxy_fault` installed; `id` is what its undo removes."""
    changed: bool
    id: str = ""
    path: str


def proxy_path(namespace: str, service: str) -> str:
    """The glob that matches every request to the Service through the API server's proxy (any port)."""
    return f"/api/v1/namespaces/{namespace}/services/{service}*/proxy*"


def _admin(api: ApiClient, method: str, path: str, body: dict | None = None) -> dict:
    """One call to the sandbox's admin API through the ApiClient (its host, TLS and bearer token)."""
    params = api.param_serialize(method=method, resource_path=path, body=body, auth_settings=["BearerToken"],
                                 header_params={"Content-Type": "application/json", "Accept": "application/json"})

    def once() -> dict:
        response = api.call_api(*params)
        response.read()
        return api.response_deserialize(response, {"2XX": "object"}).data or {}
    return call(once)


@task(name="can_inject_proxy_faults", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def can_inject_proxy_faults(api: ApiClient) -> bool:
    """Whether the cluster takes fault rules (the sandbox does; a real API server answers 404)."""
    try:
        _admin(api, "GET", FAULTS)
    except (TargetNotFound, PermanentError):
        return False
    return True


@task(name="add_proxy_fault", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def add_proxy_fault(api: ApiClient, *, namespace: str, service: str, status: int | None, latency_seconds: float,
                    share: float, dry_run: bool = False) -> ProxyFault:
    """Make requests to the service fail with `status` and/or wait `latency_seconds`, for `share` of them."""
    path = proxy_path(namespace, service)
    if dry_run:
        return ProxyFault(changed=False, path=path)
    rule = {"verb": "*", "path": path, "latency": latency_seconds, "probability": share}
    if status is not None:
        rule["status"] = status
    added = _admin(api, "POST", FAULTS, rule)
    return ProxyFault(changed=True, id=added["id"], path=path)


@task(name="remove_proxy_fault", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def remove_proxy_fault(api: ApiClient, *, fault_id: str) -> bool:
    """Remove the rule; one already gone counts as removed (idempotent). Returns whether it was there."""
    try:
        _admin(api, "DELETE", f"{FAULTS}/{fault_id}")
    except TargetNotFound:
        return False
    return True
