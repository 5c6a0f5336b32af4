"""Managed clusters: read one, its user credentials as a Kubernetes client, rotate its certificates."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import yaml
from prefect import task
from pydantic import BaseModel

from ..calls import TASK_RETRIES, call, retry_if_transient
from ..catalog import AksCluster
from ..clients import ARM_POLLING_SECONDS
from ..errors import CatalogError, OperationFailed, TargetNotFound

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerservice import ContainerServiceClient
    from kubernetes.client import ApiClient


class ClusterState(BaseModel):
    """What the runbooks need of a managed cluster: which one it is, whether it is healthy, how to log in."""
    id: str
    name: str
    location: str
    kubernetes_version: str
    provisioning_state: str
    power_state: str
    aad: bool                      # AAD-enabled: Kubernetes logins take an Entra token for the AKS server app
    pools: list[str]


@task(name="get_cluster", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def get_cluster(client: "ContainerServiceClient", *, resource_group: str, name: str) -> ClusterState:
    """Read a managed cluster; a missing one is named with the clusters that do exist."""
    try:
        raw = call(client.managed_clusters.get, resource_group, name).as_dict()
    except TargetNotFound as exc:
        raise TargetNotFound(f"AKS cluster {resource_group}/{name} not found; clusters in the subscription: "
                             f"{_cluster_names(client)}") from exc
    props = raw.get("properties") or {}
    return ClusterState(id=raw["id"], name=raw["name"], location=raw.get("location", ""),
                        kubernetes_version=props.get("currentKubernetesVersion") or props.get("kubernetesVersion", ""),
                        provisioning_state=props.get("provisioningState", ""),
                        power_state=(props.get("powerState") or {}).get("code", ""),
                        aad=bool(props.get("aadProfile")),
                        pools=[p["name"] for p in props.get("agentPoolProfiles") or []])


def _cluster_names(client: "ContainerServiceClient") -> str:
    try:
        found = [f"{c.id.split('/')[4]}/{c.name}" for c in call(lambda: list(client.managed_clusters.list()))]
    except Exception:                # noqa: BLE001 - only to enrich the message
        return "(could not be listed)"
    return ", ".join(sorted(found)) or "(none)"


@task(name="cluster_kubernetes_client", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def cluster_kubernetes_client(client: "ContainerServiceClient", cluster: AksCluster,
                              credential: "TokenCredential") -> "ApiClient":
    """The cluster's user credentials (`listClusterUserCredential`) as a Kubernetes client; on an AAD-enabled
    cluster its logins carry Entra tokens for the API server's application from `credential`."""
    from ..clients import client_from_kubeconfig
    try:
        result = call(client.managed_clusters.list_cluster_user_credentials, cluster.resource_group, cluster.name)
    except TargetNotFound as exc:
        raise TargetNotFound(f"AKS cluster {cluster.resource_group}/{cluster.name} not found; clusters in the "
                             f"subscription: {_cluster_names(client)}") from exc
    if not result.kubeconfigs:
        raise CatalogError(f"AKS cluster {cluster.name} returned no user credentials")
    config_dict = yaml.safe_load(result.kubeconfigs[0].value)
    return client_from_kubeconfig(config_dict, credential=credential, server_app_id=cluster.aad_server_app_id)


ROTATING = "RotatingClusterCertificates"


@task(name="rotate_cluster_certificates", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def rotate_cluster_certificates(client: "ContainerServiceClient", *, resource_group: str, name: str,
                                poll_seconds: float = ARM_POLLING_SECONDS) -> ClusterState:
    """`az aks rotate-certs`: POST rotateClusterCertificates and follow the operation to its end (AKS: up to
    30 minutes, the API server unavailable meanwhile); the cluster as it ended. A retry that finds the
    rotation it started still running follows it instead of starting another (AKS would refuse it, 409).

    Raises:
        OperationFailed: the rotation ended Failed or Canceled (ARM's code and message).
    """
    if get_cluster.fn(client, resource_group=resource_group, name=name).provisioning_state != ROTATING:
        poller = call(client.managed_clusters.begin_rotate_cluster_certificates, resource_group, name)
        call(_follow, poller, f"{resource_group}/{name}")
    while (state := get_cluster.fn(client, resource_group=resource_group, name=name)).provisioning_state == ROTATING:
        time.sleep(poll_seconds)                 # only when following a rotation an earlier attempt started
    if state.provisioning_state != "Succeeded":
        raise OperationFailed(f"AKS cluster {resource_group}/{name}: the certificate rotation ended "
                              f"{state.provisioning_state}", state.provisioning_state)
    return state


def _follow(poller, cluster: str) -> None:
    """Wait for the rotation's operation (its Location: 202 while it runs, 204 when done). Once ARM accepted
    the POST, an error answer from the Location is the operation's own failure, except a throttled or
    failing poll (429, 5xx), which is left to the retries (a retry follows the running rotation)."""
    from azure.core.exceptions import HttpResponseError
    try:
        poller.result()
    except HttpResponseError as exc:
        status = exc.status_code
        if status is None or status == 429 or status >= 500:
            raise
        code = getattr(exc.error, "code", "") or ""
        raise OperationFailed(f"AKS cluster {cluster}: the certificate rotation failed: {code}: "
                              f"{getattr(exc.error, 'message', '') or exc}", code) from exc
