"""Typed Kubernetes state as the runbooks read it, and the pure rules applied to it.

Parsers take the JSON the API server sent (not the SDK's models, which drop nulls and unknown fields,
so a template read through them no longer equals the server's) and return small pydantic models.
"""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from pydantic import BaseModel

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
# What `kubectl rollout undo` keeps from the Deployment instead of taking from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset({"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
                                 "deployment.kubernetes.io/desired-replicas",
                                 "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"})


class DeploymentState(BaseModel):
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    observed_generation: int
    replicas: int                      # spec.replicas: what is wanted
    status_replicas: int               # status.replicas: pods of every revision that exist
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
    history: list[int] = []            # revisions this ReplicaSet held before (it was rolled back to)
    pod_template_hash: str = ""
    created: dt.datetime | None = None
    images: dict[str, str]
    template: dict[str, Any]           # the pod template without the pod-template-hash label
    annotations: dict[str, str]
    replicas: int
    ready_replicas: int

    @property
    def numbers(self) -> list[int]:
        """Every revision number this ReplicaSet has carried, oldest first."""
        return sorted({*self.history, self.revision})


class PodState(BaseModel):
    name: str
    node: str | None
    phase: str
    ready: bool
    restarts: int
    images: list[str]
    waiting_reason: str | None = None
    template_hash: str = ""
    terminating: bool = False
    owner: str | None = None           # the controlling ReplicaSet's name


def images_of(template: dict) -> dict[str, str]:
    return {c["name"]: c.get("image", "") for c in (template.get("spec") or {}).get("containers") or []}


def describe_images(images: dict[str, str]) -> str:
    return ", ".join(f"{name}={image}" for name, image in sorted(images.items()))


def without_hash(template: dict) -> dict:
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return clean


def _timestamp(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def deployment_state(raw: dict) -> DeploymentState:
    meta, spec, status = raw["metadata"], raw["spec"], raw.get("status") or {}
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    annotations = meta.get("annotations") or {}
    return DeploymentState(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], resource_version=meta["resourceVersion"],
        generation=meta.get("generation", 0), observed_generation=status.get("observedGeneration", 0),
        replicas=spec.get("replicas", 1), status_replicas=status.get("replicas", 0) or 0,
        ready_replicas=status.get("readyReplicas", 0) or 0, updated_replicas=status.get("updatedReplicas", 0) or 0,
        available_replicas=status.get("availableReplicas", 0) or 0,
        revision=int(annotations.get(REVISION, "0") or 0), images=images_of(spec["template"]),
        paused=bool(spec.get("paused")), selector=spec.get("selector") or {}, template=spec["template"],
        annotations=annotations, progressing_reason=(progressing or {}).get("reason"))


def revision_of(raw: dict) -> Revision:
    """A ReplicaSet as a revision; `history` comes from the annotation the controller writes when an old
    ReplicaSet becomes current again (a rollback, or a re-release of an old template)."""
    meta = raw["metadata"]
    annotations = meta.get("annotations") or {}
    history = [int(n) for n in (annotations.get(REVISION_HISTORY) or "").split(",") if n.strip().isdigit()]
    return Revision(
        name=meta["name"], revision=int(annotations.get(REVISION, "0") or 0), history=history,
        pod_template_hash=(meta.get("labels") or {}).get(HASH_LABEL, ""), created=_timestamp(meta.get("creationTimestamp")),
        images=images_of(raw["spec"]["template"]), template=without_hash(raw["spec"]["template"]),
        annotations=annotations, replicas=raw["spec"].get("replicas", 0),
        ready_replicas=(raw.get("status") or {}).get("readyReplicas", 0) or 0)


def pod_state(raw: dict) -> PodState:
    meta, spec, status = raw["metadata"], raw.get("spec") or {}, raw.get("status") or {}
    statuses = status.get("containerStatuses") or []
    waiting = next((s["state"]["waiting"].get("reason") for s in statuses
                    if (s.get("state") or {}).get("waiting")), None)
    owner = next((o.get("name") for o in meta.get("ownerReferences") or []
                  if o.get("controller") and o.get("kind") == "ReplicaSet"), None)
    return PodState(
        name=meta["name"], node=spec.get("nodeName"), phase=status.get("phase") or "",
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        restarts=sum(s.get("restartCount") or 0 for s in statuses),
        images=[c.get("image", "") for c in spec.get("containers") or []], waiting_reason=waiting,
        template_hash=(meta.get("labels") or {}).get(HASH_LABEL, ""),
        terminating=bool(meta.get("deletionTimestamp")), owner=owner)


def rollout_status(state: DeploymentState) -> tuple[bool, str]:
    """The rule `kubectl rollout status` applies, in its order: (done, message).

    `done` with a progress-deadline message means the rollout failed; see `rollout_succeeded`.
    """
    if state.generation > state.observed_generation:
        return False, "waiting for the deployment spec update to be observed"
    if state.progressing_reason == "ProgressDeadlineExceeded":
        return True, f'deployment "{state.name}" exceeded its progress deadline'
    if state.updated_replicas < state.replicas:
        return False, f"{state.updated_replicas} out of {state.replicas} new replicas have been updated"
    if state.status_replicas > state.updated_replicas:
        return False, f"{state.status_replicas - state.updated_replicas} old replicas are pending termination"
    if state.available_replicas < state.updated_replicas:
        return False, f"{state.available_replicas} of {state.updated_replicas} updated replicas are available"
    return True, f'deployment "{state.name}" successfully rolled out'


def rollout_succeeded(state: DeploymentState) -> bool:
    done, message = rollout_status(state)
    return done and message.endswith("successfully rolled out")


def rollback_annotations(current: dict[str, str], target: Revision) -> dict[str, str]:
    """The Deployment annotations `kubectl rollout undo` writes: the skipped ones kept, the rest from the RS."""
    kept = {k: v for k, v in current.items() if k in ANNOTATIONS_TO_SKIP}
    return {**kept, **{k: v for k, v in target.annotations.items() if k not in ANNOTATIONS_TO_SKIP}}


def readiness_by_revision(revisions: list[Revision], pods: list[PodState]) -> list[str]:
    """`revision 3 (api=...:1.5.0): 0/1 Ready, 1 CrashLoopBackOff` for each revision that has pods, newest
    first: what the gate shows, so "3/3 available" can no longer hide that the new pods never became Ready."""
    by_hash = {r.pod_template_hash: r for r in revisions if r.pod_template_hash}
    lines = []
    for revision in sorted(revisions, key=lambda r: r.revision, reverse=True):
        mine = [p for p in pods if not p.terminating and by_hash.get(p.template_hash) is revision]
        if not mine:
            continue
        ready = sum(p.ready for p in mine)
        waiting = sorted({p.waiting_reason for p in mine if p.waiting_reason})
        restarts = sum(p.restarts for p in mine)
        line = f"revision {revision.revision} ({describe_images(revision.images)}): {ready}/{len(mine)} pods Ready"
        if waiting:
            line += f", {', '.join(waiting)}"
        if restarts:
            line += f", {restarts} restarts"
        lines.append(line)
    return lines
