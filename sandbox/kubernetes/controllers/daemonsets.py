"""DaemonSet controller: one pod per eligible node, as pkg/controller/daemon does it.

A node is eligible when the pod template's nodeSelector and required node affinity match it and every
NoSchedule/NoExecute taint on it is tolerated (the template's tolerations plus those the real controller adds
to every daemon pod, so cordoned and pressured nodes keep their daemons). Each pod is pinned to its node by
required node affinity on `metadata.name`, then bound by the scheduler; it carries the
`controller-revision-hash` of its template. A changed template rolls out node by node (RollingUpdate,
maxUnavailable) or waits for pods to be deleted (OnDelete).
"""
from __future__ import annotations

import copy
import random

from . import Controller
from .nodes import node_affinity_matches, tolerates
from .pods import TERMINAL, pod_ready
from .workloads import owned, owner_reference, resolve, template_hash

REVISION_HASH = "controller-revision-hash"
TEMPLATE_GENERATION = "pod-template-generation"
DAEMON_TOLERATIONS = (   # util.AddOrUpdateDaemonPodTolerations
    ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def daemon_tolerations(pod_spec: dict) -> list[dict]:
    tolerations = list(pod_spec.get("tolerations") or [])
    for key, effect in DAEMON_TOLERATIONS:
        if not any(t.get("key") == key and t.get("effect") == effect for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    if pod_spec.get("hostNetwork"):
        tolerations.append({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                            "effect": "NoSchedule"})
    return tolerations


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


def should_run(ds: dict, node: dict) -> bool:
    spec = ds["spec"]["template"].get("spec") or {}
    if not node_affinity_matches(spec, node):
        return False
    tolerations = daemon_tolerations(spec)
    return all(tolerates(tolerations, taint) for taint in (node.get("spec") or {}).get("taints") or ()
               if taint.get("effect") in ("NoSchedule", "NoExecute"))


def target_node(pod: dict) -> str | None:
    """The node a daemon pod is for: its nodeName once bound, else its metadata.name affinity."""
    if pod["spec"].get("nodeName"):
        return pod["spec"]["nodeName"]
    terms = ((((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for term in terms:
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and field.get("values"):
                return field["values"][0]
    return None


def pinned_affinity(affinity: dict | None, node: str) -> dict:
    """The template's affinity with every term pinned to `node` (util.ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    affinity = copy.deepcopy(affinity or {})
    required = affinity.setdefault("nodeAffinity", {}).setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    terms = required.get("nodeSelectorTerms") or [{}]
    for term in terms:
        term["matchFields"] = [f for f in term.get("matchFields") or () if f.get("key") != "metadata.name"] + [pin]
    required["nodeSelectorTerms"] = terms
    return affinity


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, sandbox) -> None:
        super().__init__(sandbox)
        self._ready_since: dict[str, float] = {}      # pod uid -> sim time first seen Ready

    def sync(self) -> None:
        nodes = self.store.items(self.kind("Node"))
        pods = [p for p in self.store.items(self.kind("Pod")) if not p["metadata"].get("deletionTimestamp")]
        for ds in self.store.items(self.kind("DaemonSet")):
            if not ds["metadata"].get("deletionTimestamp"):
                self._sync_one(ds, nodes, owned([p for p in pods if p["metadata"]["namespace"] ==
                                                 ds["metadata"]["namespace"]], ds))
        live = {p["metadata"]["uid"] for p in pods}
        self._ready_since = {uid: t for uid, t in self._ready_since.items() if uid in live}

    def _sync_one(self, ds: dict, nodes: list[dict], pods: list[dict]) -> None:
        revision = template_hash(ds["spec"]["template"], (ds.get("status") or {}).get("collisionCount", 0))
        by_node: dict[str, list[dict]] = {}
        for pod in pods:
            by_node.setdefault(target_node(pod) or "", []).append(pod)
        eligible = {n["metadata"]["name"] for n in nodes if should_run(ds, n)}
        for node, node_pods in by_node.items():
            for pod in node_pods:     # wrong node, a duplicate, or a failed daemon: delete (re-created below)
                if node not in eligible or pod is not node_pods[0] or _phase(pod) in TERMINAL:
                    self._delete(ds, pod)
        for node in sorted(eligible - {n for n, ps in by_node.items() if _phase(ps[0]) not in TERMINAL}):
            self._create(ds, node, revision)
        self._roll(ds, {n: ps[0] for n, ps in by_node.items() if n in eligible}, revision, len(eligible))
        self._update_status(ds, eligible, by_node, revision)

    def _create(self, ds: dict, node: str, revision: str) -> None:
        template = ds["spec"]["template"]
        meta = copy.deepcopy(template.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        labels = {**(meta.get("labels") or {}), REVISION_HASH: revision,
                  TEMPLATE_GENERATION: str(ds["metadata"].get("generation", 1))}
        spec = copy.deepcopy(template.get("spec") or {})
        spec["affinity"] = pinned_affinity(spec.get("affinity"), node)
        spec["tolerations"] = daemon_tolerations(spec)
        name = f"{ds['metadata']['name']}-{''.join(random.choices(_SUFFIX, k=5))}"
        pod = self.create_pod({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {**meta, "name": name, "namespace": ds["metadata"]["namespace"],
                                            "labels": labels, "ownerReferences": [owner_reference(ds)]},
                               "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
        self.record_event(ds, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    def _delete(self, ds: dict, pod: dict) -> None:
        meta = pod["metadata"]
        if self.store.find(self.kind("Pod"), meta["namespace"], meta["name"]) is not None:
            self.store.delete(self.kind("Pod"), meta["namespace"], meta["name"])
            self.record_event(ds, "SuccessfulDelete", f"Deleted pod: {meta['name']}")

    def _available(self, ds: dict, pod: dict) -> bool:
        if not pod_ready(pod):
            self._ready_since.pop(pod["metadata"]["uid"], None)
            return False
        since = self._ready_since.setdefault(pod["metadata"]["uid"], self.clock())
        return self.clock() - since >= ds["spec"].get("minReadySeconds", 0)

    def _roll(self, ds: dict, current: dict[str, dict], revision: str, desired: int) -> None:
        """RollingUpdate: replace old-revision pods while at most maxUnavailable nodes lack an available one."""
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type") != "RollingUpdate":
            return
        limit = max(1, resolve((strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1), desired, True))
        unavailable = desired - sum(1 for p in current.values() if self._available(ds, p))
        old = [p for p in current.values() if p["metadata"].get("labels", {}).get(REVISION_HASH) != revision]
        for pod in sorted(old, key=lambda p: self._available(ds, p)):     # unavailable old pods go first
            if not self._available(ds, pod):
                self._delete(ds, pod)
            elif unavailable < limit:
                unavailable += 1
                self._delete(ds, pod)

    def _update_status(self, ds: dict, eligible: set[str], by_node: dict[str, list[dict]], revision: str) -> None:
        pods = {n: ps[0] for n, ps in by_node.items() if ps}
        scheduled = [pods[n] for n in eligible if n in pods]
        available = sum(1 for p in scheduled if self._available(ds, p))
        status = {"currentNumberScheduled": len(scheduled),
                  "numberMisscheduled": sum(1 for n in pods if n not in eligible),
                  "desiredNumberScheduled": len(eligible),
                  "numberReady": sum(1 for p in scheduled if pod_ready(p)),
                  "observedGeneration": ds["metadata"].get("generation", 1),
                  "updatedNumberScheduled": sum(1 for p in scheduled
                                                if p["metadata"].get("labels", {}).get(REVISION_HASH) == revision),
                  "numberAvailable": available}
        if len(eligible) - available:
            status["numberUnavailable"] = len(eligible) - available
        old = ds.get("status") or {}
        for key in ("collisionCount", "conditions"):
            if key in old:
                status[key] = old[key]
        if status != old:
            meta = ds["metadata"]
            self.store.mutate(self.kind("DaemonSet"), meta["namespace"], meta["name"],
                              lambda obj: {**obj, "status": status})

