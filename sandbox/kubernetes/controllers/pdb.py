"""The disruption controller: PodDisruptionBudget status, computed as kube-controller-manager computes it.

The eviction subresource decides from this status alone (disruptionsAllowed, observedGeneration), so its
numbers have to follow the real rules: an int minAvailable counts the matching pods; a percentage or
maxUnavailable counts the replicas the pods' controllers want (a Deployment's pods count its
spec.replicas once, even across old and new ReplicaSets).
"""
from __future__ import annotations

import datetime as dt
import math

from ..selectors import SelectorError, label_selector_from_object
from ..store import controller_of, now_rfc3339
from . import Controller
from .nodes import condition_status

DISRUPTION_EXPIRY = 120.0          # simulated seconds before an eviction not followed by a deletion is forgotten


def int_or_percent(value: int | str, total: int) -> int:
    """GetScaledValueFromIntOrPercent with rounding up, as the disruption controller calls it."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        return math.ceil(int(text[:-1]) * total / 100)
    return int(text)


class DisruptionController(Controller):
    name = "controllermanager"

    def sync(self) -> None:
        for pdb in self.store.items(self.kind("PodDisruptionBudget")):
            status = self.status_for(pdb)
            if status != pdb.get("status"):
                meta = pdb["metadata"]
                self.store.mutate(self.kind("PodDisruptionBudget"), meta["namespace"], meta["name"],
                                  lambda current, s=status: {**current, "status": s})

    def status_for(self, pdb: dict) -> dict:
        pods = self.matching_pods(pdb)
        expected, desired = self.expected_and_desired(pdb, pods)
        disrupted = self._disrupted(pdb, pods)
        healthy = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
                      and p["metadata"]["name"] not in disrupted and condition_status(p, "Ready") == "True")
        allowed = healthy - desired
        allowed = 0 if expected <= 0 or allowed <= 0 else allowed
        old = pdb.get("status") or {}
        status = {**old, "observedGeneration": pdb["metadata"].get("generation", 1), "disruptionsAllowed": allowed,
                  "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
                  "conditions": [_allowed_condition(old, allowed > 0, pdb["metadata"].get("generation", 1))]}
        if disrupted:
            status["disruptedPods"] = disrupted
        else:
            status.pop("disruptedPods", None)
        return status

    def matching_pods(self, pdb: dict) -> list[dict]:
        """Pods in the PDB's namespace its selector matches (policy/v1: an empty selector matches all)."""
        try:
            selector = label_selector_from_object(pdb.get("spec", {}).get("selector"))
        except SelectorError:
            return []
        pods = self.store.items(self.kind("Pod"), pdb["metadata"]["namespace"])
        return [p for p in pods if selector.matches(p["metadata"].get("labels") or {})]

    def expected_and_desired(self, pdb: dict, pods: list[dict]) -> tuple[int, int]:
        """getExpectedPodCount: (expectedPods, desiredHealthy)."""
        spec = pdb.get("spec") or {}
        if spec.get("maxUnavailable") is not None:
            expected = self.expected_scale(pods)
            return expected, max(0, expected - int_or_percent(spec["maxUnavailable"], expected))
        min_available = spec.get("minAvailable")
        if min_available is None:
            return 0, 0
        if isinstance(min_available, int) or not str(min_available).endswith("%"):
            return len(pods), int_or_percent(min_available, len(pods))
        expected = self.expected_scale(pods)
        return expected, int_or_percent(min_available, expected)

    def expected_scale(self, pods: list[dict]) -> int:
        """The replicas wanted by the pods' controllers, each controller counted once; a pod without a
        (known) controller counts as one."""
        scales: dict[str, int] = {}
        loose = 0
        for pod in pods:
            owner = self._scale_owner(pod)
            if owner is None:
                loose += 1
            else:
                scales[owner["metadata"]["uid"]] = (owner.get("spec") or {}).get("replicas", 1)
        return loose + sum(scales.values())

    def _scale_owner(self, pod: dict) -> dict | None:
        """The object whose spec.replicas governs the pod: its ReplicaSet, or that ReplicaSet's Deployment."""
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        namespace = pod["metadata"]["namespace"]
        rs = self.store.find(self.kind("ReplicaSet"), namespace, ref.get("name", ""))
        if rs is None or rs["metadata"]["uid"] != ref.get("uid"):
            return None
        rs_ref = controller_of(rs)
        if rs_ref is not None and rs_ref.get("kind") == "Deployment":
            deployment = self.store.find(self.kind("Deployment"), namespace, rs_ref.get("name", ""))
            if deployment is not None and deployment["metadata"]["uid"] == rs_ref.get("uid"):
                return deployment
        return rs

    def _disrupted(self, pdb: dict, pods: list[dict]) -> dict[str, str]:
        """buildDisruptedPodMap: keep evictions of pods still present, not yet deleting, and not expired."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        present = {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}
        now = dt.datetime.now(dt.timezone.utc)
        kept = {}
        for name, stamp in recorded.items():
            if name not in present:
                continue
            try:
                when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
            except (TypeError, ValueError):
                continue
            if (now - when).total_seconds() * self.config.speed < DISRUPTION_EXPIRY:
                kept[name] = stamp
        return kept


def _allowed_condition(old_status: dict, allowed: bool, generation: int) -> dict:
    """The DisruptionAllowed condition; lastTransitionTime moves only when its status flips."""
    value = "True" if allowed else "False"
    old = next((c for c in old_status.get("conditions") or () if c.get("type") == "DisruptionAllowed"), None)
    stamp = old["lastTransitionTime"] if old and old.get("status") == value else now_rfc3339()
    return {"type": "DisruptionAllowed", "status": value, "reason": "SufficientPods" if allowed else "InsufficientPods",
            "message": "", "observedGeneration": generation, "lastTransitionTime": stamp}
