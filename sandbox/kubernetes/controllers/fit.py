"""kube-scheduler's NodeResourcesFit filter: a pod goes on a node only if its requests fit the node's allocatable
less what the pods already bound there request (CPU, memory and the pod count), so the sandbox never overcommits
a node a capacity check (or a real cluster) would call full. Its reasons are the real filter's ("Insufficient cpu",
"Insufficient memory", "Too many pods")."""
from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
RESOURCES = ("cpu", "memory", "pods")
TERMINAL = ("Succeeded", "Failed")


def quantity(text: object) -> Decimal:
    match = _QUANTITY.match(str(text).strip())
    if not match:
        return Decimal(0)            # the API server rejects malformed quantities; nothing to count here
    return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2) or ""])


def pod_requests(spec: dict) -> dict[str, Decimal]:
    """Containers' requests summed (limits stand in for missing requests, as the API server defaults them),
    or the largest init container's when more, plus the pod itself."""
    def of(container: dict) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        values = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {r: quantity(values[r]) for r in ("cpu", "memory") if r in values}
    total: dict[str, Decimal] = {"cpu": Decimal(0), "memory": Decimal(0)}
    for container in spec.get("containers") or []:
        for name, value in of(container).items():
            total[name] += value
    for init in spec.get("initContainers") or []:
        for name, value in of(init).items():
            total[name] = max(total[name], value)
    return {**total, "pods": Decimal(1)}


class NodeUsage:
    """What the pods bound to each node request, kept current as the scheduler binds more in one pass."""

    def __init__(self, pods: list[dict]) -> None:
        self._used: dict[str, dict[str, Decimal]] = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node and pod.get("status", {}).get("phase") not in TERMINAL:
                self.add(pod, node)

    def add(self, pod: dict, node: str) -> None:
        used = self._used.setdefault(node, {r: Decimal(0) for r in RESOURCES})
        for name, value in pod_requests(pod["spec"]).items():
            used[name] += value

    def misfit(self, pod: dict, node: dict) -> str | None:
        """The filter's reason when the pod does not fit on the node, or None."""
        status = node.get("status") or {}
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        used = self._used.get(node["metadata"]["name"], {})
        for name, value in pod_requests(pod["spec"]).items():
            if name in allocatable and value > 0 and used.get(name, 0) + value > quantity(allocatable[name]):
                return "Too many pods" if name == "pods" else f"Insufficient {name}"
        return None
