"""HorizontalPodAutoscalers (autoscaling/v2): find a Deployment's, change its bounds."""
from __future__ import annotations

from kubernetes.client import AutoscalingV2Api
from prefect import task
from pydantic import BaseModel

from plans.cluster import HpaState, hpa_state

from ..calls import TASK_RETRIES, call_json, retry_if_transient
from ..errors import ConflictError, PermanentError


class HpaBoundsChange(BaseModel):
    """What `set_hpa_bounds` did; the previous bounds are what its undo puts back."""
    changed: bool
    previous_min: int
    previous_max: int
    min_replicas: int
    max_replicas: int


@task(name="find_hpa", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def find_hpa(api: AutoscalingV2Api, *, namespace: str, deployment: str) -> HpaState | None:
    """The HPA that scales the Deployment (scaleTargetRef), or None."""
    raw = call_json(api.list_namespaced_horizontal_pod_autoscaler, namespace)
    found = [hpa_state(h) for h in raw.get("items") or []
             if (h.get("spec") or {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
             and h["spec"]["scaleTargetRef"].get("name") == deployment]
    return min(found, key=lambda h: h.name) if found else None


@task(name="set_hpa_bounds", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def set_hpa_bounds(api: AutoscalingV2Api, *, namespace: str, name: str, min_replicas: int, max_replicas: int,
                   expected: tuple[int, int] | None = None, dry_run: bool = False) -> HpaBoundsChange:
    """Set an HPA's minReplicas and maxReplicas (a JSON patch that first `test`s the bounds it replaces, so a
    concurrent change is never overwritten). Idempotent."""
    current = hpa_state(call_json(api.read_namespaced_horizontal_pod_autoscaler, name, namespace))
    now = (current.min_replicas, current.max_replicas)
    result = HpaBoundsChange(changed=False, previous_min=now[0], previous_max=now[1], min_replicas=min_replicas,
                             max_replicas=max_replicas)
    if expected is not None and now not in (expected, (min_replicas, max_replicas)):
        raise ConflictError(f"HPA {namespace}/{name} changed since the plan was made ({expected} -> {now}); re-run")
    if now == (min_replicas, max_replicas) and expected not in (None, now) and not dry_run:
        return result.model_copy(update={"changed": True, "previous_min": expected[0], "previous_max": expected[1]})
    if now == (min_replicas, max_replicas) or dry_run:
        return result
    patch = [{"op": "test", "path": "/spec/maxReplicas", "value": now[1]},
             {"op": "replace", "path": "/spec/minReplicas", "value": min_replicas},
             {"op": "replace", "path": "/spec/maxReplicas", "value": max_replicas}]
    try:
        call_json(api.patch_namespaced_horizontal_pod_autoscaler, name, namespace, patch)
    except PermanentError:
        # A retried PATCH whose first attempt landed fails its `test`: check before calling it a failure.
        again = hpa_state(call_json(api.read_namespaced_horizontal_pod_autoscaler, name, namespace))
        if (again.min_replicas, again.max_replicas) != (min_replicas, max_replicas):
            raise
    return result.model_copy(update={"changed": True})
