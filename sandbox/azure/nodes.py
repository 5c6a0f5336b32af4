"""AKS's hands on the cluster: it registers, labels, cordons, drains and deletes each pool's Nodes through
the Kubernetes sandbox's own API, as the AKS resource provider does through the API server, so evictions
honour PodDisruptionBudgets there and every call shows in that sandbox's request log."""
from __future__ import annotations

import http.client
import json
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import OperationError
from .operations import Clock
from .resources import AgentPool, ManagedCluster

if TYPE_CHECKING:
    from ..kubernetes.server import Sandbox

POOL_LABEL = "kubernetes.azure.com/agentpool"
IMAGE_LABEL = "kubernetes.azure.com/node-image-version"
EVICTION_RETRY_SECONDS = 5.0           # how often AKS retries an eviction a PDB refused
DRAIN_DOC = "See http://aka.ms/aks/debugdrainfailures."
_BUDGET = re.compile(r"The disruption budget (\S+) ")


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class KubeNodes:
    """A small client of the Kubernetes sandbox's API (the standard library's, one connection per call: its
    calls come from several operation threads, and it keeps `runbooks sandbox` quick to start)."""

    def __init__(self, kube: "Sandbox", clock: Clock) -> None:
        self.kube = kube
        self.clock = clock
        url = urllib.parse.urlsplit(kube.url)
        self._address = (url.hostname or "127.0.0.1", url.port)
        self._tls = ssl.create_default_context(cadata=kube.ca.cert_pem.decode()) if url.scheme == "https" else None
        self._headers = {"User-Agent": "aks-resource-provider (runbooks sandbox)", "Accept": "application/json"}
        if kube.config.token:
            self._headers["Authorization"] = f"Bearer {kube.config.token}"

    def _send(self, method: str, path: str, params: dict | None = None, body: Any = None,
              headers: dict | None = None) -> Reply:
        host, port = self._address
        connection = (http.client.HTTPSConnection(host, port, context=self._tls, timeout=10) if self._tls
                      else http.client.HTTPConnection(host, port, timeout=10))
        try:
            data = None if body is None else json.dumps(body).encode()
            sent = {**self._headers, **({"Content-Type": "application/json"} if data is not None else {}),
                    **(headers or {})}
            connection.request(method, path + (f"?{urllib.parse.urlencode(params)}" if params else ""), data, sent)
            answer = connection.getresponse()
            return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        finally:
            connection.close()

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Reply:
        """One API call; 429/5xx are retried a few times, as AKS's clients do."""
        for attempt in range(4):
            response = self._send(method, path, **kwargs)
            if response.status_code in ok:
                return response
            if response.status_code == 429 and "eviction" in path:
                return response
            if response.status_code not in (429, 500, 502, 503, 504) or attempt == 3:
                break
            self.clock.sleep(float(response.headers.get("retry-after") or 1))
        raise OperationError("KubernetesAPICallFailed", f"{method} {path} answered {response.status_code}: "
                             f"{_message(response)}")

    # -- reading -------------------------------------------------------------------------------------

    def nodes(self, pool: str | None = None) -> list[dict]:
        """The pool's Nodes (by AKS's pool label), or every Node carrying one."""
        selector = f"{POOL_LABEL}={pool}" if pool else POOL_LABEL
        return self._call("GET", "/api/v1/nodes", params={"labelSelector": selector}).json()["items"]

    def _pods_on(self, node: str) -> list[dict]:
        return self._call("GET", "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"}).json()["items"]

    # -- writing -------------------------------------------------------------------------------------

    def register(self, manifest: dict, ready_timeout: float = 10.0) -> None:
        """Create the Node (its kubelet registering) and wait until it reports Ready."""
        name = manifest["metadata"]["name"]
        self._call("POST", "/api/v1/nodes", body=manifest)
        waited = 0.0
        while not _ready(self._call("GET", f"/api/v1/nodes/{name}").json()):
            if waited >= ready_timeout:
                raise OperationError("NodesNotReady", f"Node {name} did not become Ready.")
            waited += 0.02
            self.clock.pause(0.02)

    def patch(self, name: str, patch: dict) -> None:
        self._call("PATCH", f"/api/v1/nodes/{name}", body=patch,
                   headers={"Content-Type": "application/merge-patch+json"})

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        self.patch(name, {"spec": {"unschedulable": True if unschedulable else None}})

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/api/v1/nodes/{name}", ok=(200, 202, 404))

    def drain(self, node: str, timeout: float, *, code: str = "PodDrainFailure", force: bool = False) -> None:
        """Evict every pod a drain moves (not DaemonSet or mirror pods), retrying evictions a PDB refuses
        until `timeout` simulated seconds, then fail as AKS does. `force` deletes instead of evicting
        (ignore-pod-disruption-budget)."""
        waited = 0.0
        while True:
            pods = [p for p in self._pods_on(node) if _drained(p)]
            if not pods:
                return
            blocked = [(pod, answer) for pod in pods if (answer := self._evict(pod, force)) is not None]
            if blocked and waited >= timeout:
                raise OperationError(code, self._drain_message(node, *blocked[0]))
            self.clock.sleep(EVICTION_RETRY_SECONDS if blocked else 0.5)
            waited += EVICTION_RETRY_SECONDS if blocked else 0.5

    def _evict(self, pod: dict, force: bool) -> Reply | None:
        """Evict (or delete) one pod; the 429 answer when a disruption budget refuses, else None."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if force or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            self._call("DELETE", path, ok=(200, 202, 404))
            return None
        answer = self._call("POST", f"{path}/eviction", ok=(200, 201, 404, 429), body={
            "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": meta["name"],
                                                                        "namespace": meta["namespace"]}})
        return answer if answer.status_code == 429 else None

    def _drain_message(self, node: str, pod: dict, answer: Reply) -> str:
        meta = pod["metadata"]
        body = _json(answer)
        causes = (body.get("details") or {}).get("causes") or [{}]
        found = _BUDGET.search(causes[0].get("message", ""))
        budget = found.group(1) if found else "(unknown)"
        unready = self._unready(meta["namespace"], budget) if found else 0
        return (f"Drain node {node} failed when evicting pod {meta['name']} failed with Too Many Requests error. "
                f"This is often caused by a restrictive Pod Disruption Budget (PDB) policy. {DRAIN_DOC} Original "
                f"error: {body.get('message', '')}. PDB debug info: {meta['namespace']}/{meta['name']} blocked by "
                f"pdb {budget} with {unready} unready pods.")

    def _unready(self, namespace: str, budget: str) -> int:
        response = self._send("GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{budget}")
        status = _json(response).get("status") or {}
        return max(0, status.get("expectedPods", 0) - status.get("currentHealthy", 0))


# -- what AKS puts on a Node ---------------------------------------------------------------------------

def zone_of(cluster: ManagedCluster, pool: AgentPool, instance: int) -> str:
    """Zonal pools spread instances across their zones in turn; a non-zonal node is in zone "0"."""
    zones = pool.properties.get("availabilityZones") or []
    return f"{cluster.location}-{zones[instance % len(zones)]}" if zones else "0"


def node_labels(cluster: ManagedCluster, pool: AgentPool, name: str, zone: str) -> dict[str, str]:
    props = pool.properties
    size, arch = props["vmSize"], "amd64"
    return {"agentpool": pool.name, "beta.kubernetes.io/arch": arch, "beta.kubernetes.io/instance-type": size,
            "beta.kubernetes.io/os": "linux", "failure-domain.beta.kubernetes.io/region": cluster.location,
            "failure-domain.beta.kubernetes.io/zone": zone, POOL_LABEL: pool.name,
            "kubernetes.azure.com/cluster": cluster.node_resource_group,
            "kubernetes.azure.com/mode": pool.mode.lower(), IMAGE_LABEL: pool.node_image_version,
            "kubernetes.azure.com/nodepool-type": props.get("type", "VirtualMachineScaleSets"),
            "kubernetes.azure.com/os-sku": props.get("osSKU", "Ubuntu"), "kubernetes.azure.com/role": "agent",
            "kubernetes.io/arch": arch, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/role": "agent", "node.kubernetes.io/instance-type": size,
            "topology.kubernetes.io/region": cluster.location, "topology.kubernetes.io/zone": zone,
            **(props.get("nodeLabels") or {})}


def taints(pool: AgentPool) -> list[dict]:
    out = []
    for taint in pool.properties.get("nodeTaints") or []:
        key_value, effect = taint.rsplit(":", 1)
        key, _, value = key_value.partition("=")
        out.append({"key": key, "value": value, "effect": effect})
    return out


def node_manifest(cluster: ManagedCluster, pool: AgentPool, instance: int) -> dict:
    name = pool.node_name(instance)
    provider = (f"azure:///subscriptions/{cluster.subscription_id}/resourceGroups/"
                f"{cluster.node_resource_group.lower()}/providers/Microsoft.Compute/virtualMachineScaleSets/"
                f"{pool.vmss}/virtualMachines/{instance}")
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels(cluster, pool, name, zone_of(cluster, pool, instance))},
            "spec": {"providerID": provider, "taints": taints(pool)}}


def _drained(pod: dict) -> bool:
    """Pods a drain moves: not DaemonSet pods, not mirror pods, not already going."""
    meta = pod["metadata"]
    if meta.get("deletionTimestamp") or "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    return not any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or [])


def _ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _json(response: Reply) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: Reply) -> str:
    return str(_json(response).get("message") or response.body[:200].decode("utf-8", "replace"))
