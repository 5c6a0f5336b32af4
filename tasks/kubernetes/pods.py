"""Pods and events of a workload: evidence for the plan and the report. Read-only."""
from __future__ import annotations

from kubernetes.client import CoreV1Api
from prefect import task
from pydantic import BaseModel

from .calls import TASK_RETRIES, call, retry_if_transient


class PodState(BaseModel):
    name: str
    node: str | None
    phase: str
    ready: bool
    restarts: int
    images: list[str]
    waiting_reason: str | None = None


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
    """Pods matching a Deployment's selector, with readiness and restarts."""
    pods = call(api.list_namespaced_pod, namespace, label_selector=selector_string(selector)).items
    result = []
    for pod in pods:
        statuses = pod.status.container_statuses or []
        waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        result.append(PodState(name=pod.metadata.name, node=pod.spec.node_name, phase=pod.status.phase or "",
                               ready=ready, restarts=sum(s.restart_count or 0 for s in statuses),
                               images=[c.image for c in pod.spec.containers], waiting_reason=waiting))
    return result


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
