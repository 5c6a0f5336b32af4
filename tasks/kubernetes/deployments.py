"""Deployments and their ReplicaSets: read state, list revisions, restore a pod template.

Read-only probes first, then the one mutating action (`patch_deployment_template`), which takes `dry_run`.
"""
from __future__ import annotations

import copy
from typing import Any

from kubernetes.client import AppsV1Api
from prefect import task
from pydantic import BaseModel

from ..errors import ConflictError, PermanentError, TargetNotFound
from .calls import TASK_RETRIES, call_json, retry_if_transient

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# What `kubectl rollout undo` keeps from the Deployment instead of taking from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset({"kubectl.kubernetes.io/last-applied-configuration", REVISION,
                                 "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                                 "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"})


class DeploymentState(BaseModel):
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    replicas: int
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    revision: int
    images: dict[str, str]
    paused: bool
    selector: dict[str, Any]
    template: dict[str, Any]
    annotations: dict[str, str]
    progressing_reason: str | None = None


class Revision(BaseModel):
    """One ReplicaSet of a Deployment: a revision that `rollout undo` could go back to."""
    name: str
    revision: int
    images: dict[str, str]
    template: dict[str, Any]          # the pod template without the pod-template-hash label
    annotations: dict[str, str]
    replicas: int
    ready_replicas: int


class TemplateChange(BaseModel):
    """What `patch_deployment_template` did; `previous_template` is what an undo needs."""
    changed: bool
    dry_run: bool
    previous_template: dict[str, Any]
    previous_annotations: dict[str, str]
    resource_version: str | None = None


def _images(template: dict) -> dict[str, str]:
    return {c["name"]: c.get("image", "") for c in (template.get("spec") or {}).get("containers") or []}


def _without_hash(template: dict) -> dict:
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return clean


def state_of(raw: dict) -> DeploymentState:
    meta, spec, status = raw["metadata"], raw["spec"], raw.get("status") or {}
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    annotations = meta.get("annotations") or {}
    return DeploymentState(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], resource_version=meta["resourceVersion"],
        generation=meta.get("generation", 0), observed_generation=status.get("observedGeneration", 0),
        replicas=spec.get("replicas", 1), ready_replicas=status.get("readyReplicas", 0) or 0,
        updated_replicas=status.get("updatedReplicas", 0) or 0,
        available_replicas=status.get("availableReplicas", 0) or 0,
        revision=int(annotations.get(REVISION, "0") or 0), images=_images(spec["template"]),
        paused=bool(spec.get("paused")), selector=spec.get("selector") or {}, template=spec["template"],
        annotations=annotations, progressing_reason=(progressing or {}).get("reason"))


@task(name="read_deployment", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_deployment(api: AppsV1Api, *, namespace: str, name: str) -> DeploymentState:
    """Read a Deployment's spec and rollout status."""
    try:
        raw = call_json(api.read_namespaced_deployment, name, namespace)
    except TargetNotFound as exc:
        raise TargetNotFound(f"deployment {namespace}/{name} not found") from exc
    return state_of(raw)


@task(name="list_replica_sets", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_replica_sets(api: AppsV1Api, *, namespace: str, deployment: DeploymentState) -> list[Revision]:
    """The Deployment's ReplicaSets (by controller ownerReference), oldest revision first."""
    labels = ",".join(f"{k}={v}" for k, v in (deployment.selector.get("matchLabels") or {}).items())
    raw = call_json(api.list_namespaced_replica_set, namespace, label_selector=labels)
    revisions = []
    for rs in raw.get("items") or []:
        owners = rs["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == deployment.uid and o.get("controller") for o in owners):
            continue
        annotations = rs["metadata"].get("annotations") or {}
        revisions.append(Revision(
            name=rs["metadata"]["name"], revision=int(annotations.get(REVISION, "0") or 0),
            images=_images(rs["spec"]["template"]), template=_without_hash(rs["spec"]["template"]),
            annotations=annotations, replicas=rs["spec"].get("replicas", 0),
            ready_replicas=(rs.get("status") or {}).get("readyReplicas", 0) or 0))
    return sorted(revisions, key=lambda r: r.revision)


def rollback_annotations(current: dict[str, str], target: Revision) -> dict[str, str]:
    """The Deployment annotations `kubectl rollout undo` writes: the skipped ones kept, the rest from the RS."""
    kept = {k: v for k, v in current.items() if k in ANNOTATIONS_TO_SKIP}
    return {**kept, **{k: v for k, v in target.annotations.items() if k not in ANNOTATIONS_TO_SKIP}}


@task(name="patch_deployment_template", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def patch_deployment_template(api: AppsV1Api, *, namespace: str, name: str, expected_template: dict,
                              template: dict, annotations: dict[str, str], dry_run: bool = False) -> TemplateChange:
    """Replace the pod template and annotations, as `kubectl rollout undo` does (a JSON patch).

    Idempotent: no write when the template is already in place. Guarded: the patch carries a `test` of the
    template the plan was made from, so a Deployment changed by someone else since is never overwritten.
    """
    current = state_of(call_json(api.read_namespaced_deployment, name, namespace))
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
        now = state_of(call_json(api.read_namespaced_deployment, name, namespace))
        if now.template == template:
            return TemplateChange(changed=True, dry_run=False, resource_version=now.resource_version, **undo)
        raise
    return TemplateChange(changed=True, dry_run=False, resource_version=result["metadata"]["resourceVersion"], **undo)
