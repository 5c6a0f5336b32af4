"""What each long-running operation does, in simulated time: scale a pool (new Nodes registered; surplus
ones cordoned, drained and deleted), upgrade its node image (a surge node, then each node drained and
reimaged in turn), delete it, rotate the cluster's certificates (the attached API server then serves a new
certificate). Without a Kubernetes sandbox attached only the ARM side changes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import OperationError
from .nodes import IMAGE_LABEL, node_manifest, taints
from .operations import Operation, now_rfc3339
from .resources import LATEST_NODE_IMAGE, AgentPool, ManagedCluster, instance_of, new_etag, vcpus

if TYPE_CHECKING:
    from .server import AzureSandbox

DRAIN_TIMEOUT_MINUTES = 30             # AKS's default upgradeSettings.drainTimeoutInMinutes


class Provisioner:
    def __init__(self, azure: "AzureSandbox") -> None:
        self.azure = azure
        self.config = azure.config
        self.clock = azure.clock

    # -- starting operations (called with the model lock held) ---------------------------------------

    def put_pool(self, cluster: ManagedCluster, pool: AgentPool, previous: dict | None) -> Operation:
        pool.provisioning_state = "Creating" if previous is None else "Updating"
        return self._start(pool.provisioning_state, cluster, pool,
                           lambda op: self._reconcile(cluster, pool, previous or {}))

    def upgrade_node_image(self, cluster: ManagedCluster, pool: AgentPool) -> Operation:
        pool.provisioning_state = "UpgradingNodeImageVersion"
        return self._start(pool.provisioning_state, cluster, pool, lambda op: self._upgrade(cluster, pool))

    def delete_pool(self, cluster: ManagedCluster, pool: AgentPool, force: bool) -> Operation:
        pool.provisioning_state = "Deleting"
        return self._start("Deleting", cluster, pool, lambda op: self._delete(pool, force))

    def rotate_certificates(self, cluster: ManagedCluster) -> Operation:
        cluster.provisioning_state = "RotatingClusterCertificates"

        def finish(op: Operation) -> None:
            with self.azure.lock:
                cluster.provisioning_state = _state(op)
                if op.status == "Succeeded":
                    cluster.certificates_rotated.append(now_rfc3339())
                    cluster.etag = new_etag()
                    if self.azure.kubernetes is not None:      # the API server now presents a new certificate
                        self.azure.kubernetes.rotate_serving_certificate()

        return self.azure.operations.start("RotatingClusterCertificates", cluster.key, None,
                                           lambda op: self.clock.sleep(self.config.rotation_seconds), finish)

    def _start(self, name: str, cluster: ManagedCluster, pool: AgentPool, work) -> Operation:
        def finish(op: Operation) -> None:
            with self.azure.lock:
                if op.name == "Deleting" and op.status == "Succeeded":
                    cluster.pools.pop(pool.name, None)
                    return
                pool.provisioning_state = _state(op)
                if op.name == "UpgradingNodeImageVersion" and op.status == "Succeeded":
                    pool.node_image_version = LATEST_NODE_IMAGE

        def run(op: Operation) -> None:
            self.clock.sleep(self.config.operation_seconds)
            work(op)

        return self.azure.operations.start(name, cluster.key, pool.name, run, finish)

    # -- the work ------------------------------------------------------------------------------------

    def _reconcile(self, cluster: ManagedCluster, pool: AgentPool, previous: dict) -> None:
        """Bring the pool's nodes to its stored count, labels and taints."""
        nodes = self.azure.nodes
        current = [] if nodes is None else sorted((n["metadata"]["name"] for n in nodes.nodes(pool.name)),
                                                  key=lambda name: instance_of(name) or -1)
        have = len(current) if nodes is not None else int(previous.get("count", 0))
        self._check_quota(cluster, pool, have)
        if nodes is not None and previous:
            self._relabel(pool, previous, current)
        if pool.count > have:
            self.clock.sleep(self.config.node_provision_seconds)     # the scale set's VMs boot in parallel
            for _ in range(pool.count - have):
                self._add_node(cluster, pool)
        elif pool.count < have and nodes is not None:
            self._remove_nodes(pool, current[pool.count:])             # the newest instances go first

    def _check_quota(self, cluster: ManagedCluster, pool: AgentPool, have: int) -> None:
        """The subscription's regional vCPU quota, as Azure Compute enforces it when the scale set grows."""
        size = vcpus(pool.properties["vmSize"])
        needed = (pool.count - have) * size
        if needed <= 0:
            return
        usage = self.azure.vcpus_in_use(cluster, except_pool=pool) + have * size
        limit = self.azure.vcpu_quota
        if usage + needed > limit:
            raise OperationError("QuotaExceeded", (
                f"Operation could not be completed as it results in exceeding approved Total Regional Cores quota. "
                f"Additional details - Deployment Model: Resource Manager, Location: {cluster.location}, Current "
                f"Limit: {limit}, Current Usage: {usage}, Additional Required: {needed}, (Minimum) New Limit "
                f"Required: {usage + needed}. Submit a request for Quota increase by specifying parameters listed "
                f"in the 'Details' section for deployment to succeed."))

    def _add_node(self, cluster: ManagedCluster, pool: AgentPool) -> str:
        with self.azure.lock:
            instance = pool.next_instance
            pool.next_instance += 1
        manifest = node_manifest(cluster, pool, instance)
        if self.azure.nodes is not None:
            self.azure.nodes.register(manifest)
        return manifest["metadata"]["name"]

    def _remove_nodes(self, pool: AgentPool, victims: list[str], *, force: bool = False) -> None:
        """Scale-in as AKS does it: cordon them all, drain each, delete each."""
        nodes = self.azure.nodes
        assert nodes is not None
        for name in victims:
            nodes.cordon(name)
        for name in victims:
            nodes.drain(name, self._drain_timeout(pool), force=force)
            nodes.delete(name)

    def _relabel(self, pool: AgentPool, previous: dict, current: list[str]) -> None:
        """AKS applies changed nodeLabels and nodeTaints to the nodes already in the pool."""
        old_labels, new_labels = previous.get("nodeLabels") or {}, pool.properties.get("nodeLabels") or {}
        if old_labels == new_labels and previous.get("nodeTaints") == pool.properties.get("nodeTaints"):
            return
        labels = {**{k: None for k in old_labels if k not in new_labels}, **new_labels}
        for name in current:
            self.azure.nodes.patch(name, {"metadata": {"labels": labels}, "spec": {"taints": taints(pool)}})

    def _upgrade(self, cluster: ManagedCluster, pool: AgentPool) -> None:
        """A surge node on the new image; then each node cordoned, drained, reimaged and uncordoned in turn
        (keeping its name); then the surge node drained and deleted."""
        nodes = self.azure.nodes
        if nodes is None:
            self.clock.sleep(self.config.node_provision_seconds)
            return
        current = sorted((n["metadata"]["name"] for n in nodes.nodes(pool.name)), key=lambda n: instance_of(n) or -1)
        with self.azure.lock:
            old_image, pool.node_image_version = pool.node_image_version, LATEST_NODE_IMAGE
            try:
                surge_manifest = node_manifest(cluster, pool, pool.next_instance)
            finally:
                pool.node_image_version = old_image
            pool.next_instance += 1
        self.clock.sleep(self.config.node_provision_seconds)
        nodes.register(surge_manifest)
        for name in current + [surge_manifest["metadata"]["name"]]:
            nodes.cordon(name)
            nodes.drain(name, self._drain_timeout(pool), code="UpgradeFailed")
            if name == surge_manifest["metadata"]["name"]:
                nodes.delete(name)
                continue
            self.clock.sleep(self.config.node_provision_seconds)
            nodes.patch(name, {"metadata": {"labels": {IMAGE_LABEL: LATEST_NODE_IMAGE}},
                               "spec": {"unschedulable": None}})

    def _delete(self, pool: AgentPool, force: bool) -> None:
        if self.azure.nodes is None:
            return
        names = [n["metadata"]["name"] for n in self.azure.nodes.nodes(pool.name)]
        self._remove_nodes(pool, names, force=force)

    @staticmethod
    def _drain_timeout(pool: AgentPool) -> float:
        minutes = (pool.properties.get("upgradeSettings") or {}).get("drainTimeoutInMinutes") or DRAIN_TIMEOUT_MINUTES
        return float(minutes) * 60


def _state(op: Operation) -> str:
    return {"Succeeded": "Succeeded", "Canceled": "Canceled"}.get(op.status, "Failed")
