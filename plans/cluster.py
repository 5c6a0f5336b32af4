"""Cluster capacity as the scaling planner reads it: Nodes (allocatable, taints, readiness), the requests
of running pods, PodDisruptionBudgets and HorizontalPodAutoscalers, typed from the API's JSON. Pure."""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

from .pools import POOL_LABEL

_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
TERMINAL = ("Succeeded", "Failed")


def quantity(text: Any) -> Decimal:
    """A Kubernetes resource quantity (`500m`, `2`, `256Mi`, `1e9`) as a number of base units."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2) or ""])
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc


class Resources(BaseModel):
    """CPU in millicores, memory in bytes, and a pod count."""
    cpu: int = 0
    memory: int = 0
    pods: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(cpu=self.cpu + other.cpu, memory=self.memory + other.memory, pods=self.pods + other.pods)

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources(cpu=self.cpu - other.cpu, memory=self.memory - other.memory, pods=self.pods - other.pods)

    def fits_in(self, room: "Resources") -> bool:
        return self.cpu <= room.cpu and self.memory <= room.memory and self.pods <= room.pods

    def describe(self) -> str:
        return f"cpu {self.cpu}m, memory {self.memory // 2**20}Mi, {self.pods} pod(s)"


def resources(values: dict | None, *, pods: int = 0) -> Resources:
    values = values or {}
    cpu = quantity(values["cpu"]) * 1000 if "cpu" in values else 0
    memory = quantity(values["memory"]) if "memory" in values else 0
    return Resources(cpu=math.ceil(cpu), memory=math.ceil(memory), pods=int(values.get("pods", pods)))


def pod_requests(pod_spec: dict) -> Resources:
    """What the scheduler reserves for a pod: its containers' requests summed, or the largest init
    container's when that is more (limits stand in for missing requests, as the API server defaults them)."""
    def request(container: dict) -> Resources:
        spec = container.get("resources") or {}
        return resources({**(spec.get("limits") or {}), **(spec.get("requests") or {})})
    total = sum((request(c) for c in pod_spec.get("containers") or []), Resources())
    for init in pod_spec.get("initContainers") or []:
        need = request(init)
        total = Resources(cpu=max(total.cpu, need.cpu), memory=max(total.memory, need.memory))
    return total + Resources(pods=1)


class NodeState(BaseModel):
    name: str
    pool: str | None                   # AKS's kubernetes.azure.com/agentpool label
    ready: bool
    unschedulable: bool
    allocatable: Resources
    labels: dict[str, str]
    taints: list[dict]


def node_state(raw: dict) -> NodeState:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    labels = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return NodeState(name=meta["name"], pool=labels.get(POOL_LABEL), ready=ready,
                     unschedulable=bool(spec.get("unschedulable")),
                     allocatable=resources(status.get("allocatable") or status.get("capacity")), labels=labels,
                     taints=list(spec.get("taints") or []))


class PodLoad(BaseModel):
    """A pod as capacity sees it: where it runs, what it reserves, whether a drain moves it."""
    namespace: str
    name: str
    node: str | None
    labels: dict[str, str]
    requests: Resources
    node_selector: dict[str, str] = {}
    tolerations: list[dict] = []
    ready: bool = False
    daemon: bool = False               # a DaemonSet's (or mirror) pod: drains skip it, it is not rescheduled

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_load(raw: dict) -> PodLoad | None:
    """None for a pod that reserves nothing any more (finished or being deleted)."""
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    if status.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
        return None
    owners = meta.get("ownerReferences") or []
    daemon = any(o.get("kind") == "DaemonSet" for o in owners) or "kubernetes.io/config.mirror" in (
        meta.get("annotations") or {})
    return PodLoad(namespace=meta["namespace"], name=meta["name"], node=spec.get("nodeName"),
                   labels=meta.get("labels") or {}, requests=pod_requests(spec),
                   node_selector=spec.get("nodeSelector") or {}, tolerations=spec.get("tolerations") or [],
                   ready=any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in status.get("conditions") or []), daemon=daemon)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """v1.Toleration.ToleratesTaint."""
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("key") and toleration["key"] != taint.get("key"):
            continue
        if (toleration.get("operator") or "Equal") == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def can_run_on(pod: PodLoad, node: NodeState) -> bool:
    """Whether the scheduler may place the pod there: Ready, not cordoned, taints tolerated, nodeSelector met."""
    if not node.ready or node.unschedulable:
        return False
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    return all(tolerates(pod.tolerations, t) for t in node.taints if t.get("effect") in ("NoSchedule", "NoExecute"))


class PdbState(BaseModel):
    namespace: str
    name: str
    selector: dict[str, Any]
    disruptions_allowed: int
    current_healthy: int
    desired_healthy: int

    def covers(self, pod: PodLoad) -> bool:
        return pod.namespace == self.namespace and selector_matches(self.selector, pod.labels)


def pdb_state(raw: dict) -> PdbState:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    return PdbState(namespace=meta["namespace"], name=meta["name"], selector=spec.get("selector") or {},
                    disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
                    current_healthy=int(status.get("currentHealthy") or 0),
                    desired_healthy=int(status.get("desiredHealthy") or 0))


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector object against labels (policy/v1: an empty selector matches everything)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and not (present and labels[key] in values)) or (op == "NotIn" and present and labels[key]
                                                                         in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


class HpaState(BaseModel):
    namespace: str
    name: str
    target: str                        # the Deployment it scales
    min_replicas: int
    max_replicas: int
    generation: int = 0
    observed_generation: int = 0
    current_replicas: int = 0
    desired_replicas: int = 0


def hpa_state(raw: dict) -> HpaState:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    return HpaState(namespace=meta["namespace"], name=meta["name"], target=(spec.get("scaleTargetRef") or {}).get(
        "name", ""), min_replicas=int(spec.get("minReplicas") or 1), max_replicas=int(spec["maxReplicas"]),
        generation=int(meta.get("generation") or 0), observed_generation=int(status.get("observedGeneration") or 0),
        current_replicas=int(status.get("currentReplicas") or 0),
        desired_replicas=int(status.get("desiredReplicas") or 0))


def hpa_settled(hpa: HpaState, deployment_replicas: int) -> tuple[bool, str]:
    """The HPA has seen its spec, wants what runs, and what runs lies within its bounds."""
    bounds = f"{hpa.min_replicas}-{hpa.max_replicas}"
    if hpa.observed_generation < hpa.generation:
        return False, f"HPA {hpa.name} has not observed its spec (bounds {bounds}) yet"
    if not hpa.min_replicas <= deployment_replicas <= hpa.max_replicas:
        return False, f"deployment {hpa.target} has {deployment_replicas} replicas, outside the HPA's {bounds}"
    if hpa.desired_replicas != hpa.current_replicas or hpa.current_replicas != deployment_replicas:
        return False, (f"HPA {hpa.name} wants {hpa.desired_replicas}, has {hpa.current_replicas}, deployment "
                       f"{deployment_replicas}")
    return True, f"HPA {hpa.name} settled at {hpa.current_replicas} replicas within {bounds}"
