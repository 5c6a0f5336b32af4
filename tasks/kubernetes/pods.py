"""Pods and events: read-only evidence for the plan and the report."""
from __future__ import annotations

from kubernetes.client import CoreV1Api
from prefect import task
from pydantic import BaseModel

from plans.kubernetes import PodState, pod_state

from ..calls import TASK_RETRIES, call, call_json, retry_if_transient
from ..errors import TargetNotFound, classify


class EventSummary(BaseModel):
    type: str
    reason: str
    object: str
    message: str
    last_seen: str | None = None


def selector_string(selector: dict) -> str:
    """A label selector object as the `labelSelector` query string."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(expr.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(parts)


@task(name="list_pods", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_pods(api: CoreV1Api, *, namespace: str, selector: dict) -> list[PodState]:
    """Pods matching a Deployment's selector, with readiness, restarts and their revision's hash."""
    raw = call_json(api.list_namespaced_pod, namespace, label_selector=selector_string(selector))
    return [pod_state(p) for p in raw.get("items") or []]


@task(name="list_events", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_events(api: CoreV1Api, *, namespace: str, names: list[str], limit: int = 20) -> list[EventSummary]:
    """Recent events about the named objects (a Deployment, its ReplicaSets and pods), newest last."""
    wanted = set(names)
    events = call(api.list_namespaced_event, namespace).items
    mine = [e for e in events if e.involved_object and e.involved_object.name in wanted]
    mine.sort(key=lambda e: str(e.last_timestamp or e.event_time or ""))
    return [EventSummary(type=e.type or "", reason=e.reason or "", message=e.message or "",
                         object=f"{(e.involved_object.kind or '').lower()}/{e.involved_object.name}",
                         last_seen=str(e.last_timestamp) if e.last_timestamp else None) for e in mine[-limit:]]


class PodsRemoved(BaseModel):
    """What `delete_pods`/`evict_pods` did: the pods that went, and those a PodDisruptionBudget kept."""
    changed: bool
    removed: list[str]
    refused: list[str] = []


@task(name="delete_pods", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def delete_pods(api: CoreV1Api, *, namespace: str, names: list[str], dry_run: bool = False) -> PodsRemoved:
    """Delete the named pods (`kubectl delete pod`): invasive, their controller replaces them. A pod already
    gone counts as done (a retried call must not fail on its own first attempt)."""
    if dry_run:
        return PodsRemoved(changed=False, removed=[])
    removed = []
    for name in names:
        try:
            call(api.delete_namespaced_pod, name, namespace)
        except TargetNotFound:
            pass
        removed.append(name)
    return PodsRemoved(changed=bool(removed), removed=removed)


@task(name="evict_pods", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def evict_pods(api: CoreV1Api, *, namespace: str, names: list[str], dry_run: bool = False) -> PodsRemoved:
    """Evict the named pods through `pods/eviction`, as `kubectl drain` does: invasive. A PodDisruptionBudget
    that forbids an eviction (429) keeps that pod: it is reported in `refused`, not retried (the budget is
    the service protecting itself, which is what a drill wants to see)."""
    if dry_run:
        return PodsRemoved(changed=False, removed=[])
    removed, refused = [], []
    for name in names:
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            api.create_namespaced_pod_eviction(name, namespace, body)      # not `call`: a 429 here is an answer
            removed.append(name)
        except Exception as exc:
            if getattr(exc, "status", None) == 429:
                refused.append(name)
                continue
            mapped = classify(exc)
            if mapped is exc:
                raise
            if not isinstance(mapped, TargetNotFound):
                raise mapped from exc
            removed.append(name)
    return PodsRemoved(changed=bool(removed), removed=removed, refused=refused)
