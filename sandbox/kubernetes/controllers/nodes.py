"""Node "kubelet registration": fills the status a kubelet posts when a Node object appears.

Tests and manifests usually create bare Nodes (name, labels, maybe taints); tools like `kubectl get nodes`
and the scheduler need conditions, capacity and addresses. Only missing parts are filled, so a test that
sets a node's Ready condition to False or Unknown keeps it: nothing here heartbeats or "heals" a node.
"""
from __future__ import annotations

from ..store import now_rfc3339
from . import Controller

KUBELET_VERSION = "v1.31.0"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
CAPACITY = {"cpu": "4", "ephemeral-storage": "100Gi", "hugepages-2Mi": "0", "memory": "16Gi", "pods": "110"}

_CONDITIONS = (  # (type, status, reason, message) in the order a kubelet reports them
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint: empty effect matches any effect, empty key with Exists matches any key."""
    for toleration in tolerations or ():
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("key") and toleration["key"] != taint.get("key"):
            continue
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def effective_taints(node: dict) -> list[dict]:
    """The node's taints plus the one the node lifecycle controller puts on a node that is not Ready."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    ready = condition_status(node, "Ready")
    if ready == "False":
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    elif ready != "True":
        taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})
    return taints


def node_ready(node: dict) -> bool:
    """A node counts as Ready only with an explicit Ready=True condition (as the scheduler sees it)."""
    return condition_status(node, "Ready") == "True"


def condition_status(obj: dict, kind: str) -> str | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return condition.get("status")
    return None


def internal_ip(node: dict) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


class NodeController(Controller):
    name = "kubelet"

    def sync(self) -> None:
        nodes = self.store.items(self.kind("Node"))
        used = {internal_ip(n) for n in nodes}
        for node in nodes:
            status = self._completed(node, used)
            if status is not None:
                used.add(internal_ip({"status": status}))
                self.store.mutate(self.kind("Node"), None, node["metadata"]["name"],
                                  lambda current, s=status: {**current, "status": s})

    def _completed(self, node: dict, used: set[str | None]) -> dict | None:
        """The node's status with whatever a kubelet would have registered filled in; None if complete."""
        status = dict(node.get("status") or {})
        before = dict(status)
        self._fill_conditions(status)
        for key in ("capacity", "allocatable"):
            status.setdefault(key, dict(CAPACITY))
        status.setdefault("nodeInfo", _node_info(node["metadata"]["name"]))
        status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 10250}})
        if not status.get("addresses"):
            status["addresses"] = [{"type": "InternalIP", "address": _free_ip(used)},
                                   {"type": "Hostname", "address": node["metadata"]["name"]}]
        return None if status == before else status

    @staticmethod
    def _fill_conditions(status: dict) -> None:
        """Add the condition types that are missing; never touch ones already present."""
        conditions = list(status.get("conditions") or [])
        present = {c.get("type") for c in conditions}
        missing = [t for t in _CONDITIONS if t[0] not in present]
        if not missing:
            return
        stamp = now_rfc3339()
        for kind, value, reason, message in missing:
            conditions.append({"type": kind, "status": value, "reason": reason, "message": message,
                               "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
        status["conditions"] = conditions


def _node_info(name: str) -> dict:
    import hashlib
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {"machineID": digest[:32], "systemUUID": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-"
                                                   f"{digest[16:20]}-{digest[20:32]}",
            "bootID": digest[32:64], "kernelVersion": "6.1.0-18-amd64",
            "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.0",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": "amd64"}


def _free_ip(used: set[str | None]) -> str:
    """The lowest 10.240.0.x no other node has, so addresses stay unique and stable."""
    for host in range(10, 255):
        address = f"10.240.0.{host}"
        if address not in used:
            return address
    return "10.240.0.254"


def node_affinity_matches(pod_spec: dict, node: dict) -> bool:
    """Whether the node satisfies the pod's nodeSelector and required node affinity (NodeSelectorTerms are
    ORed; an empty term matches nothing; matchFields know metadata.name, as the scheduler does)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any((term.get("matchExpressions") or term.get("matchFields"))
               and all(_requirement(r, labels) for r in term.get("matchExpressions") or ())
               and all(_requirement(r, fields) for r in term.get("matchFields") or ()) for term in terms)


def _requirement(requirement: dict, values: dict) -> bool:
    key, op, wanted = requirement.get("key"), requirement.get("operator"), requirement.get("values") or []
    present, value = key in values, values.get(key)
    if op == "In":
        return present and value in wanted
    if op == "NotIn":
        return not present or value not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            number, bound = int(value), int(wanted[0])
        except (TypeError, ValueError):
            return False
        return number > bound if op == "Gt" else number < bound
    return False
