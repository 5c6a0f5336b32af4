"""The sandbox's HPA controller: bounds enforced as kube-controller-manager enforces them, status as it writes it,
and a simulated CPU load (the annotation) scaled with the real formula."""
from __future__ import annotations

import pytest

from sandbox.kubernetes.controllers.hpa import LOAD
from tests.conftest import deployment_manifest

pytestmark = pytest.mark.timeout(60)


def hpa(name: str = "web", low: int = 2, high: int = 5, **annotations: str) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 50}}}]}}


def replicas(sandbox, name: str = "web") -> int:
    return sandbox.get("Deployment", name, "default")["spec"]["replicas"]


def test_replicas_outside_the_bounds_are_brought_within_and_the_status_says_so(sandbox):
    sandbox.apply_object(deployment_manifest("web", replicas=8))
    sandbox.apply_object(hpa())
    sandbox.wait_for(lambda: replicas(sandbox) == 5)
    status = sandbox.wait_for(lambda: (s := sandbox.get("HorizontalPodAutoscaler", "web", "default").get("status"))
                              and s.get("currentReplicas") == 5 and s)
    assert status["desiredReplicas"] == 5 and status["observedGeneration"] == 1 and status["lastScaleTime"]
    assert [c["type"] for c in status["conditions"]] == ["AbleToScale", "ScalingActive", "ScalingLimited"]
    events = [e["message"] for e in sandbox.list("Event", "default") if e["reason"] == "SuccessfulRescale"]
    assert events == ["New size: 5; reason: Current number of replicas above Spec.MaxReplicas"]
    raised = sandbox.get("HorizontalPodAutoscaler", "web", "default")
    raised["spec"]["minReplicas"] = 6
    raised["spec"]["maxReplicas"] = 7
    sandbox.apply_object(raised)
    sandbox.wait_for(lambda: replicas(sandbox) == 6)


def test_without_load_it_holds_and_with_a_simulated_load_it_scales_by_the_real_formula(sandbox):
    sandbox.apply_object(deployment_manifest("web", replicas=3))
    sandbox.apply_object(hpa(high=10))
    sandbox.wait_for(lambda: (sandbox.get("HorizontalPodAutoscaler", "web", "default").get("status") or {})
                     .get("currentReplicas") == 3)
    assert replicas(sandbox) == 3                                       # utilisation reads as the target
    loaded = sandbox.get("HorizontalPodAutoscaler", "web", "default")
    loaded["metadata"]["annotations"] = {LOAD: "270"}
    sandbox.apply_object(loaded)
    sandbox.wait_for(lambda: replicas(sandbox) == 6)                   # 270% over 3 pods: 90% each; ceil(3 * 90 / 50)
    status = sandbox.wait_for(lambda: (s := sandbox.get("HorizontalPodAutoscaler", "web", "default")["status"])
                              .get("currentReplicas") == 6 and s)
    assert status["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 45 and replicas(sandbox) == 6
