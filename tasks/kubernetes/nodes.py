"""Nodes: which are schedulable, cordon and uncordon (the chaos drill's node fault and its undo)."""
from __future__ import annotations

from kubernetes.client import CoreV1Api
from prefect import task
from pydantic import BaseModel

from ..calls import TASK_RETRIES, call_json, retry_if_transient


class CordonResult(BaseModel):
    """What `cordon_node`/`uncordon_node` did; `previous_unschedulable` is what the undo restores."""
    node: str
    changed: bool
    previous_unschedulable: bool
    unschedulable: bool


@task(name="list_schedulable_nodes", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_schedulable_nodes(api: CoreV1Api) -> list[str]:
    """Names of the nodes new pods can land on: Ready, not cordoned, no NoSchedule/NoExecute taint."""
    nodes = call_json(api.list_node).get("items") or []
    return sorted(n["metadata"]["name"] for n in nodes if _schedulable(n))


def _schedulable(node: dict) -> bool:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    tainted = any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or [])
    return ready and not spec.get("unschedulable") and not tainted


@task(name="read_node_unschedulable", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_node_unschedulable(api: CoreV1Api, *, name: str) -> bool:
    return bool((call_json(api.read_node, name).get("spec") or {}).get("unschedulable"))


@task(name="cordon_node", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def cordon_node(api: CoreV1Api, *, name: str, unschedulable: bool = True, dry_run: bool = False) -> CordonResult:
    """Mark a node unschedulable (`kubectl cordon`), or schedulable again with `unschedulable=False`
    (`kubectl uncordon`). Idempotent: no write when the node already is."""
    previous = bool((call_json(api.read_node, name).get("spec") or {}).get("unschedulable"))
    if previous == unschedulable or dry_run:
        return CordonResult(node=name, changed=False, previous_unschedulable=previous, unschedulable=previous)
    call_json(api.patch_node, name, {"spec": {"unschedulable": unschedulable}})
    return CordonResult(node=name, changed=True, previous_unschedulable=previous, unschedulable=unschedulable)
