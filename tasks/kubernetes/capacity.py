"""What capacity planning reads: Nodes, the pods bound to them with their requests, PodDisruptionBudgets.
Read-only; each task lists one kind."""
from __future__ import annotations

from kubernetes.client import CoreV1Api, PolicyV1Api
from prefect import task

from plans.cluster import NodeState, PdbState, PodLoad, node_state, pdb_state, pod_load

from ..calls import TASK_RETRIES, call_json, retry_if_transient


@task(name="list_nodes", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_nodes(api: CoreV1Api, *, label_selector: str = "") -> list[NodeState]:
    """Nodes (optionally by label, e.g. one AKS agent pool's), with allocatable, taints and readiness."""
    raw = call_json(api.list_node, label_selector=label_selector)
    return [node_state(n) for n in raw.get("items") or []]


@task(name="list_pod_loads", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_pod_loads(api: CoreV1Api) -> list[PodLoad]:
    """Every pod in the cluster that still reserves room on a node (or waits for one), with its requests."""
    raw = call_json(api.list_pod_for_all_namespaces)
    return [load for load in (pod_load(p) for p in raw.get("items") or []) if load is not None]


@task(name="list_pdbs", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_pdbs(api: PolicyV1Api, *, namespace: str | None = None) -> list[PdbState]:
    """PodDisruptionBudgets of one namespace (or all), with the disruptions they allow now."""
    raw = call_json(api.list_namespaced_pod_disruption_budget, namespace) if namespace else \
        call_json(api.list_pod_disruption_budget_for_all_namespaces)
    return [pdb_state(p) for p in raw.get("items") or []]
