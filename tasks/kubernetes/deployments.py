"""Deployments and their ReplicaSets: read state, list revisions, restore a pod template.

Read-only probes first, then the one mutating action (`patch_deployment_template`), which takes `dry_run`.
"""
from __future__ import annotations

from typing import Any

from kubernetes.client import AppsV1Api, CoreV1Api
from prefect import task
from pydantic import BaseModel

from plans.kubernetes import DeploymentState, Revision, deployment_state, revision_of

from ..calls import TASK_RETRIES, call_json, retry_if_transient
from ..errors import ConflictError, PermanentError, TargetNotFound


class TemplateChange(BaseModel):
    """What `patch_deployment_template` did; `previous_template` is what an undo needs."""
    changed: bool
    dry_run: bool
    previous_template: dict[str, Any]
    previous_annotations: dict[str, str]
    resource_version: str | None = None


@task(name="read_deployment", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_deployment(api: AppsV1Api, *, namespace: str, name: str) -> DeploymentState:
    """Read a Deployment's spec and rollout status."""
    try:
        raw = call_json(api.read_namespaced_deployment, name, namespace)
    except TargetNotFound as exc:
        raise TargetNotFound(f"deployment {namespace}/{name} not found") from exc
    return deployment_state(raw)


@task(name="list_replica_sets", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_replica_sets(api: AppsV1Api, *, namespace: str, deployment: DeploymentState) -> list[Revision]:
    """The Deployment's ReplicaSets (by controller ownerReference), oldest revision first."""
    labels = ",".join(f"{k}={v}" for k, v in (deployment.selector.get("matchLabels") or {}).items())
    raw = call_json(api.list_namespaced_replica_set, namespace, label_selector=labels)
    revisions = [revision_of(rs) for rs in raw.get("items") or []
                 if any(o.get("uid") == deployment.uid and o.get("controller")
                        for o in rs["metadata"].get("ownerReferences") or [])]
    return sorted(revisions, key=lambda r: r.revision)


@task(name="deployment_of_pod", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def deployment_of_pod(apps: AppsV1Api, core: CoreV1Api, *, namespace: str, pod: str) -> str | None:
    """The Deployment that owns a pod through its ReplicaSet (ownerReferences): its name, "" when the pod
    is gone, None when no Deployment owns it (a bare pod, a StatefulSet's, a bare ReplicaSet's)."""
    try:
        raw = call_json(core.read_namespaced_pod, pod, namespace)
    except TargetNotFound:
        return ""
    replica_set = _controller(raw, "ReplicaSet")
    if replica_set is None:
        return None
    try:
        return _controller(call_json(apps.read_namespaced_replica_set, replica_set, namespace), "Deployment")
    except TargetNotFound:
        return None


def _controller(raw: dict, kind: str) -> str | None:
    return next((o.get("name") for o in raw["metadata"].get("ownerReferences") or []
                 if o.get("controller") and o.get("kind") == kind), None)


@task(name="patch_deployment_template", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def patch_deployment_template(api: AppsV1Api, *, namespace: str, name: str, expected_template: dict,
                              template: dict, annotations: dict[str, str], dry_run: bool = False) -> TemplateChange:
    """Replace the pod template and annotations, as `kubectl rollout undo` does (a JSON patch).

    Idempotent: no write when the template is already in place. Guarded: the patch carries a `test` of the
    template the plan was made from, so a Deployment changed by someone else since is never overwritten.
    """
    current = deployment_state(call_json(api.read_namespaced_deployment, name, namespace))
    undo = dict(previous_template=current.template, previous_annotations=current.annotations)
    if current.template == template:
        return TemplateChange(changed=False, dry_run=dry_run, resource_version=current.resource_version, **undo)
    if current.template != expected_template:
        raise ConflictError(f"deployment {namespace}/{name} changed since the plan was made; re-run to re-plan")
    if dry_run:
        return TemplateChange(changed=False, dry_run=True, **undo)
    patch = [{"op": "test", "path": "/spec/template", "value": expected_template},
             {"op": "replace", "path": "/spec/template", "value": template},
             {"op": "replace", "path": "/metadata/annotations", "value": annotations}]
    try:
        result = call_json(api.patch_namespaced_deployment, name, namespace, patch)
    except PermanentError:
        # A retried PATCH whose first attempt landed fails its `test`: check before calling it a failure.
        now = deployment_state(call_json(api.read_namespaced_deployment, name, namespace))
        if now.template == template:
            return TemplateChange(changed=True, dry_run=False, resource_version=now.resource_version, **undo)
        raise
    return TemplateChange(changed=True, dry_run=False, resource_version=result["metadata"]["resourceVersion"], **undo)


class ScaleResult(BaseModel):
    """What `scale_deployment` did; `previous_replicas` is what its undo needs."""
    changed: bool
    previous_replicas: int
    replicas: int


@task(name="scale_deployment", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def scale_deployment(api: AppsV1Api, *, namespace: str, name: str, replicas: int, expected: int | None = None,
                     dry_run: bool = False) -> ScaleResult:
    """Set a Deployment's replica count through its `scale` subresource. Idempotent: no write when it already
    has `replicas`. With `expected` (the count the plan saw), a count changed by someone else since is
    refused rather than overwritten. (No resourceVersion precondition: the controllers' status writes bump it
    all the time, and an undo must not lose that race.)"""
    if replicas < 0:
        raise PermanentError(f"replicas must be 0 or more, not {replicas}")
    current = call_json(api.read_namespaced_deployment_scale, name, namespace)
    previous = int((current.get("spec") or {}).get("replicas", 0))
    if expected is not None and previous not in (expected, replicas):
        raise ConflictError(f"deployment {namespace}/{name} was scaled to {previous} since the plan was made "
                            f"(it saw {expected}); re-run to re-plan")
    if previous == replicas and expected not in (None, replicas) and not dry_run:
        return ScaleResult(changed=True, previous_replicas=expected, replicas=replicas)   # an earlier attempt landed
    if previous == replicas or dry_run:
        return ScaleResult(changed=False, previous_replicas=previous, replicas=previous if dry_run else replicas)
    call_json(api.patch_namespaced_deployment_scale, name, namespace, {"spec": {"replicas": replicas}})
    return ScaleResult(changed=True, previous_replicas=previous, replicas=replicas)
