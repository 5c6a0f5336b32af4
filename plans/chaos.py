"""Chaos drills, typed: the experiment (fault, steady-state hypothesis, abort conditions, duration), its
blast radius and its plan. Pure: no Prefect, no SDK, no I/O except reading an experiment file.

Why a drill is a runbook: a drill proves a service survives a fault, and must never become the outage. So
the fault is a reversible change like any other (the kernel's undo restores it, always), the hypothesis is
checked before (an unhealthy service is not drilled), during (a broken tolerance aborts at once) and
after the restore, and the guards (blast radius, approval, freeze, lock) apply before the first write.
"""
from __future__ import annotations

import copy
import datetime as dt
import math
from pathlib import Path
from typing import Annotated, Iterable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.errors import GuardRefused, PermanentError

from .plan import Change, Plan
from .pools import scale_in_victims
from .targets import DeploymentTarget

RUNBOOK = "chaos-drill"


class ExperimentError(PermanentError):
    """An experiment file or form is invalid, or asks for something the drill cannot do (named in the message)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- faults: each one small and reversible ----------------------------------------------------------

class PodKill(_Strict):
    """Delete a share (or a count) of the service's pods; its ReplicaSet replaces them."""
    kind: Literal["pod-kill"] = "pod-kill"
    share: float | None = Field(None, gt=0, le=1, description="share of the pods to delete, 0 < share <= 1")
    count: int | None = Field(None, ge=1, description="number of pods to delete (instead of share)")

    @model_validator(mode="after")
    def _one_of(self) -> "PodKill":
        if (self.share is None) == (self.count is None):
            raise ValueError("give exactly one of share or count")
        return self


class NodeDrain(_Strict):
    """Cordon a node that runs the service and evict the service's pods from it (PDBs respected)."""
    kind: Literal["node-drain"] = "node-drain"
    node: str | None = Field(None, description="node to drain; default: the node running most of its pods")


class ScaleDown(_Strict):
    """Scale the service's Deployment down to `replicas`."""
    kind: Literal["scale-down"] = "scale-down"
    replicas: int = Field(ge=0, description="replica count during the drill")


class CrashloopImage(_Strict):
    """Roll out a release that crash-loops (a bad release): the image tag gets a `-crashloop` suffix."""
    kind: Literal["crashloop-image"] = "crashloop-image"
    container: str | None = Field(None, description="container to break; default: the first")


class ApiFault(_Strict):
    """Errors or latency in front of the service (the API server's service proxy): sandbox only."""
    kind: Literal["api-fault"] = "api-fault"
    status: int | None = Field(None, ge=400, le=599, description="HTTP status to answer with, e.g. 503")
    latency_seconds: float = Field(0.0, ge=0, le=30, description="added latency per request")
    share: float = Field(1.0, gt=0, le=1, description="share of the requests affected")
    kubernetes_service: str | None = Field(None, description="the Service in front of the pods; default: the "
                                                             "Deployment's name")

    @model_validator(mode="after")
    def _does_something(self) -> "ApiFault":
        if self.status is None and not self.latency_seconds:
            raise ValueError("give a status, a latency_seconds, or both")
        return self


class NodePoolScaleIn(_Strict):
    """Take a node away from an AKS node pool through ARM (its drain honours PDBs); the restore puts the
    pool's exact previous count back. AKS environments only; refused for an autoscaled pool."""
    kind: Literal["node-pool-scale-in"] = "node-pool-scale-in"
    pool: str = Field(min_length=1, description="the agent pool to take a node from")
    nodes: Literal[1] = Field(1, description="nodes to take away (one)")


Fault = Annotated[Union[PodKill, NodeDrain, ScaleDown, CrashloopImage, ApiFault, NodePoolScaleIn],
                  Field(discriminator="kind")]


# -- the steady-state hypothesis: probes with tolerances ----------------------------------------------

class ReadyReplicas(_Strict):
    """At least `at_least` of the service's pods are Ready."""
    kind: Literal["ready-replicas"] = "ready-replicas"
    at_least: Annotated[int, Field(ge=0)] | Literal["all"] = Field(
        description='a count, or "all": the replica count the Deployment had before the drill')

    def minimum(self, replicas: int) -> int:
        return replicas if self.at_least == "all" else self.at_least

    def describe(self) -> str:
        return f"ready replicas >= {self.at_least}"


class HealthRatio(_Strict):
    """The health URL answers 2xx for at least `at_least` of the requests over `window_seconds`."""
    kind: Literal["health-ratio"] = "health-ratio"
    at_least: float = Field(ge=0, le=1)
    window_seconds: float = Field(2.0, gt=0, le=300)
    url: str | None = Field(None, description="default: the service's health_url in the catalog")

    def describe(self) -> str:
        return f"health URL 2xx ratio >= {self.at_least:.2f} over {self.window_seconds:g}s"


class Restarts(_Strict):
    """The service's containers restart at most `at_most` times during the drill."""
    kind: Literal["restarts"] = "restarts"
    at_most: int = Field(ge=0)

    def describe(self) -> str:
        return f"container restarts <= {self.at_most}"


Probe = Annotated[Union[ReadyReplicas, HealthRatio, Restarts], Field(discriminator="kind")]


class Experiment(_Strict):
    """One drill: the target service, the fault, the steady-state hypothesis, abort conditions, duration."""
    title: str = Field(min_length=1)
    service: str = Field(min_length=1, description="catalog service to drill")
    fault: Fault
    hypothesis: list[Probe] = Field(min_length=1, description="steady state: checked before, during, after")
    abort_conditions: list[Probe] | None = Field(None, description="watched during the fault; default (none "
                                                 "given): the hypothesis; an empty list watches nothing")
    duration_seconds: float = Field(gt=0, le=3600, description="how long the fault stays in place")
    description: str = ""

    @property
    def watched(self) -> list[Probe]:
        return list(self.hypothesis if self.abort_conditions is None else self.abort_conditions)


def parse_experiment(raw: object, source: str) -> Experiment:
    """Validate an experiment; errors name the source and each offending field."""
    try:
        return Experiment.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ExperimentError(f"experiment {source} is invalid: {fields}") from exc


def read_experiment_file(path: Path) -> dict:
    """The file's mapping (JSON is YAML); errors name the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"experiment file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ExperimentError(f"experiment file {path} is not valid YAML or JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ExperimentError(f"experiment file {path} must hold a mapping, not {type(raw).__name__}")
    return raw


def experiment_path(folder: Path, name: str) -> Path:
    """A file in the catalog's experiments folder; a name that leaves the folder is refused."""
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise ExperimentError(f"experiment_file {name!r} is outside the experiments folder {folder}")
    return path


# -- blast radius and plan ----------------------------------------------------------------------------

class DrillState(BaseModel):
    """What preflight read: the Deployment's pods and the cluster's schedulable nodes."""
    replicas: int
    ready: int
    pods: list[str]                       # live pod names
    pods_by_node: dict[str, list[str]]    # node -> the service's pods on it
    schedulable_nodes: list[str]
    images: dict[str, str]
    max_surge: int = 1
    pool_count: int = 0                   # node-pool-scale-in: the pool's count and its nodes, from preflight
    pool_nodes: list[str] = []


class BlastRadius(_Strict):
    """The most a drill may take away, from the catalog: a share of the service's pods and of the nodes."""
    max_pod_share: float = Field(0.5, gt=0, le=1)
    max_node_share: float = Field(0.34, gt=0, le=1)


def pods_to_kill(fault: PodKill, pods: list[str]) -> list[str]:
    count = fault.count if fault.count is not None else max(1, math.floor(fault.share * len(pods)))
    return sorted(pods)[:count]


def choose_node(fault: NodeDrain, state: DrillState) -> str:
    if fault.node:
        if fault.node not in state.pods_by_node:
            raise ExperimentError(f"fault.node {fault.node!r} runs none of the service's pods; nodes that do: "
                                  f"{', '.join(sorted(state.pods_by_node)) or '(none)'}")
        return fault.node
    if not state.pods_by_node:
        raise ExperimentError("fault node-drain: no node runs the service's pods")
    return max(sorted(state.pods_by_node), key=lambda n: len(state.pods_by_node[n]))


def affected(fault: Fault, state: DrillState) -> tuple[float, float]:
    """(share of the service's pods, share of the schedulable nodes) the fault takes away."""
    total = max(state.replicas, 1)
    if isinstance(fault, PodKill):
        return len(pods_to_kill(fault, state.pods)) / total, 0.0
    if isinstance(fault, ScaleDown):
        return max(state.replicas - fault.replicas, 0) / total, 0.0
    if isinstance(fault, NodeDrain):
        node = choose_node(fault, state)
        return len(state.pods_by_node[node]) / total, 1 / max(len(state.schedulable_nodes), 1)
    if isinstance(fault, NodePoolScaleIn):
        gone = scale_in_victims(state.pool_nodes, state.pool_count - fault.nodes)
        return (sum(len(state.pods_by_node.get(n, [])) for n in gone) / total,
                fault.nodes / max(len(state.schedulable_nodes), 1))
    if isinstance(fault, CrashloopImage):
        return min(state.max_surge, total) / total, 0.0     # the new pods that crash before the rollout stalls
    return fault.share, 0.0                                 # ApiFault: the share of requests broken


def check_blast_radius(fault: Fault, state: DrillState, cap: BlastRadius) -> str:
    """A note for the report; raises GuardRefused when the fault would take away more than the catalog allows."""
    pods, nodes = affected(fault, state)
    if pods > cap.max_pod_share + 1e-9:
        raise GuardRefused(f"blast radius: {fault.kind} takes away {pods:.0%} of the service's pods "
                           f"({state.replicas} replicas); the catalog allows at most {cap.max_pod_share:.0%}")
    if nodes > cap.max_node_share + 1e-9:
        raise GuardRefused(f"blast radius: {fault.kind} takes away {nodes:.0%} of the schedulable nodes "
                           f"({len(state.schedulable_nodes)}); the catalog allows at most {cap.max_node_share:.0%}")
    return f"blast radius: {pods:.0%} of pods, {nodes:.0%} of nodes (caps {cap.max_pod_share:.0%}, " \
           f"{cap.max_node_share:.0%})"


def crashloop_image(image: str) -> str:
    """`repo:1.4.2` -> `repo:1.4.2-crashloop` (the sandbox's kubelet crash-loops any tag containing it)."""
    repo, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:                 # no tag, or the colon was a registry's port
        return f"{image}:latest-crashloop"
    return image if "crashloop" in tag else f"{repo}:{tag}-crashloop"


def fault_change(fault: Fault, target: DeploymentTarget, state: DrillState) -> Change:
    """The one change a drill makes, as the plan shows it."""
    resource = target.resource
    if isinstance(fault, PodKill):
        return Change(resource=resource, field="pods (deleted)", before=len(state.pods),
                      after=f"{len(state.pods)} after replacing {', '.join(pods_to_kill(fault, state.pods))}")
    if isinstance(fault, ScaleDown):
        return Change(resource=resource, field="spec.replicas", before=state.replicas, after=fault.replicas)
    if isinstance(fault, NodeDrain):
        node = choose_node(fault, state)
        return Change(resource=f"node {node}", field="spec.unschedulable", before=False, after=True)
    if isinstance(fault, NodePoolScaleIn):
        return Change(resource=f"node pool {fault.pool}", field="properties.count", before=state.pool_count,
                      after=state.pool_count - fault.nodes)
    if isinstance(fault, CrashloopImage):
        name = fault.container or next(iter(state.images), "")
        if name not in state.images:
            raise ExperimentError(f"fault.container {name!r} is not in the pod template; "
                                  f"containers: {', '.join(state.images)}")
        return Change(resource=resource, field=f"spec.template image ({name})", before=state.images[name],
                      after=crashloop_image(state.images[name]))
    what = " + ".join(filter(None, [f"HTTP {fault.status}" if fault.status else "",
                                    f"{fault.latency_seconds:g}s latency" if fault.latency_seconds else ""]))
    return Change(resource=f"service {target.namespace}/{fault.kubernetes_service or target.deployment} (proxy)",
                  field="injected fault",
                  before="none", after=f"{what} on {fault.share:.0%} of requests")


def plan_drill(experiment: Experiment, target: DeploymentTarget, state: DrillState, notes: list[str]) -> Plan:
    """The drill's plan: one fault, held for the duration, then restored (always)."""
    change = fault_change(experiment.fault, target, state)
    changes = [change]
    if isinstance(experiment.fault, NodeDrain):         # cordon, then evict: two writes, each with its undo
        node = change.resource.removeprefix("node ")
        changes.append(Change(resource=target.resource, field=f"pods on {node} (evicted)",
                              before=len(state.pods_by_node[node]), after=0))
    watched = ", ".join(p.describe() for p in experiment.watched)
    return Plan(runbook=RUNBOOK, target=target, changes=changes,
                summary=(f"drill {experiment.title!r}: {change.describe()} for {experiment.duration_seconds:g}s, "
                         f"abort if not ({watched}); then restore and check the hypothesis again"),
                evidence=notes)


# -- guards of their own: freeze overlap and approval ----------------------------------------------------

def check_drill_window(environment: str, windows: Iterable, *, now: dt.datetime, seconds: float) -> None:
    """Refuse a drill whose fault and restore (`seconds`) would overlap a freeze window. A drill is never an
    emergency, so unlike other runbooks it has no override.

    Raises:
        GuardRefused: naming the window.
    """
    end = now + dt.timedelta(seconds=seconds)
    for window in windows:
        start, stop = (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in (window.start, window.end))
        if start < end and now < stop:
            raise GuardRefused(f"environment {environment!r} has a freeze window {start:%Y-%m-%d %H:%M}-"
                               f"{stop:%Y-%m-%d %H:%M} UTC ({window.reason}) overlapping the drill "
                               f"({now:%H:%M:%S}-{end:%H:%M:%S} UTC): drills never run in a freeze")


def drill_policy(production: bool, policy: str) -> str:
    """Production drills need a person's approval even where the environment auto-approves other runbooks;
    staging drills may run unattended (game days on a schedule)."""
    return "one" if production and policy == "auto" else policy


def drill_state(*, replicas: int, images: dict[str, str], pods: list, schedulable_nodes: list[str]) -> DrillState:
    """Preflight's reads (a Deployment's spec, its `PodState`s, the schedulable nodes) as the planner's input."""
    live = [p for p in pods if not p.terminating]
    by_node: dict[str, list[str]] = {}
    for pod in live:
        if pod.node:
            by_node.setdefault(pod.node, []).append(pod.name)
    return DrillState(replicas=replicas, ready=sum(p.ready for p in live), pods=sorted(p.name for p in live),
                      pods_by_node=by_node, schedulable_nodes=schedulable_nodes, images=images,
                      max_surge=max(1, math.ceil(replicas * 0.25)))


def crashloop_template(template: dict, container: str | None) -> dict:
    """The pod template with one container's image replaced by its crash-looping twin (a bad release)."""
    broken = copy.deepcopy(template)
    containers = broken["spec"]["containers"]
    chosen = next((c for c in containers if c["name"] == container), None) if container else containers[0]
    if chosen is None:
        raise ExperimentError(f"fault.container {container!r} is not in the pod template; containers: "
                              f"{', '.join(c['name'] for c in containers)}")
    chosen["image"] = crashloop_image(chosen.get("image", ""))
    return broken
