"""The horizontal pod autoscaler controller, as kube-controller-manager reconciles an autoscaling/v2 HPA.

Its bounds are enforced as the real controller enforces them before it looks at metrics (a target with 0
replicas is left alone: scaling disabled; above maxReplicas -> max; below minReplicas -> min). There is no
metrics server: an HPA's CPU utilisation reads as its target (so within bounds nothing changes), unless the
HPA carries `sandbox.runbooks.dev/cpu-load: "N"`, a simulated total load (N percent of one pod's CPU
request, spread over the pods: utilisation is N / replicas); then the desired count is the real formula,
ceil(current * utilisation / target), held within the bounds. Status (currentReplicas,
desiredReplicas, currentMetrics, lastScaleTime, conditions AbleToScale / ScalingActive / ScalingLimited,
observedGeneration) is written as the real controller writes it.
"""
from __future__ import annotations

import math

from ..store import now_rfc3339
from . import Controller

LOAD = "sandbox.runbooks.dev/cpu-load"


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"

    def sync(self) -> None:
        for hpa in self.store.items(self.kind("HorizontalPodAutoscaler")):
            self._reconcile(hpa)

    def _reconcile(self, hpa: dict) -> None:
        meta, spec = hpa["metadata"], hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        target = self.store.find(self.kind("Deployment"), meta["namespace"], ref.get("name", "")) \
            if ref.get("kind") == "Deployment" else None
        if target is None:
            self._write_status(hpa, 0, 0, None, ("AbleToScale", "False", "FailedGetScale",
                                                 f"the HPA controller was unable to get the target's current scale: "
                                                 f'deployments/scale.apps "{ref.get("name")}" not found'))
            return
        current = int(target["spec"].get("replicas", 1))
        desired, limited, utilization = self._desired(hpa, current)
        if desired != current:
            self.store.mutate(self.kind("Deployment"), meta["namespace"], target["metadata"]["name"],
                              lambda d: {**d, "spec": {**d["spec"], "replicas": desired}})
            why = limited or "cpu resource utilization (percentage of request) " + (
                "above target" if desired > current else "below target")
            self.record_event(hpa, "SuccessfulRescale", f"New size: {desired}; reason: {why}")
        self._write_status(hpa, current, desired, utilization, None, limited, rescaled=desired != current)

    def _desired(self, hpa: dict, current: int) -> tuple[int, str | None, int | None]:
        """(desired replicas, why it was limited, the utilisation read)."""
        spec = hpa["spec"]
        low, high = int(spec.get("minReplicas") or 1), int(spec["maxReplicas"])
        if current == 0 and low != 0:
            return 0, None, None
        if current > high:
            return high, "Current number of replicas above Spec.MaxReplicas", None
        if current < low:
            return low, "Current number of replicas below Spec.MinReplicas", None
        target = _cpu_target(spec)
        load = (hpa["metadata"].get("annotations") or {}).get(LOAD)
        utilization = round(int(load) / current) if load else int(target or 0)
        if not target or abs(utilization / target - 1.0) <= 0.1:        # the controller's 10% tolerance
            return current, None, utilization
        wanted = math.ceil(current * utilization / target)
        if wanted > high:
            return high, "the desired replica count is more than the maximum replica count", utilization
        if wanted < low:
            return low, "the desired replica count is less than the minimum replica count", utilization
        return wanted, None, utilization

    def _write_status(self, hpa: dict, current: int, desired: int, utilization: int | None,
                      failure: tuple | None, limited: str | None = None, rescaled: bool = False) -> None:
        old = hpa.get("status") or {}
        stamp = now_rfc3339()
        status = {"observedGeneration": hpa["metadata"].get("generation", 1), "currentReplicas": current,
                  "desiredReplicas": desired, "currentMetrics": _metrics(hpa, utilization)}
        if rescaled or old.get("lastScaleTime"):
            status["lastScaleTime"] = stamp if rescaled else old["lastScaleTime"]
        conditions = [failure] if failure else [
            ("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"),
            ("ScalingActive", "True", "ValidMetricFound",
             "the HPA was able to successfully calculate a replica count from cpu resource utilization"),
            ("ScalingLimited", "True" if limited else "False", "TooManyReplicas" if limited and "above" in limited
             else "TooFewReplicas" if limited else "DesiredWithinRange",
             limited or "the desired count is within the acceptable range")]
        status["conditions"] = [_condition(old, *c, stamp) for c in conditions]
        if status != old:
            meta = hpa["metadata"]
            self.store.mutate(self.kind("HorizontalPodAutoscaler"), meta["namespace"], meta["name"],
                              lambda current_hpa: {**current_hpa, "status": status})


def _cpu_target(spec: dict) -> int | None:
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            return (resource.get("target") or {}).get("averageUtilization")
    return None


def _metrics(hpa: dict, utilization: int | None) -> list[dict]:
    if utilization is None or _cpu_target(hpa["spec"]) is None:
        return []
    return [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": utilization}}}]


def _condition(old: dict, kind: str, value: str, reason: str, message: str, stamp: str) -> dict:
    before = next((c for c in old.get("conditions") or [] if c.get("type") == kind), None)
    since = before["lastTransitionTime"] if before and before.get("status") == value else stamp
    return {"type": kind, "status": value, "lastTransitionTime": since, "reason": reason, "message": message}
