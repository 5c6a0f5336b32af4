"""The scaling planner: typed requests (a service's replicas, its HPA's bounds, a node pool's count or
autoscaler bounds, or "scale up" from an alert), the environment's scaling policy (quotas, blast radius),
and the plans for services. Node pools are planned in plans/pool_scaling.py. Pure: typed state in, a
`ScalingDecision` out, or a `PlanningError` that names the limit before anything is written."""
from __future__ import annotations

import math
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .cluster import HpaState, NodeState, PdbState, PodLoad, pod_requests
from .capacity import room_for
from .kubernetes import DeploymentState
from .plan import Change, Plan, PlanningError
from .pools import PoolSettings
from .targets import DeploymentTarget, HpaTarget

RUNBOOK = "scale-service"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceReplicas(_Request):
    """Set the replica count of a service's Deployment."""
    kind: Literal["replicas"] = "replicas"
    service: str = Field(description="the catalog service, e.g. payments-api")
    replicas: int = Field(description="replicas to run: 0 or more, within its HPA's bounds and the quota")


class HpaBounds(_Request):
    """Set the bounds of a service's HorizontalPodAutoscaler."""
    kind: Literal["hpa"] = "hpa"
    service: str = Field(description="the catalog service whose HPA to change")
    min_replicas: int = Field(description="the HPA's minReplicas (1 or more)")
    max_replicas: int = Field(description="the HPA's maxReplicas (at least min_replicas, within the quota)")


class PoolCount(_Request):
    """Set an AKS node pool's node count (a pool whose autoscaler is off)."""
    kind: Literal["node-pool"] = "node-pool"
    pool: str = Field(description="the agent pool's name, e.g. user")
    count: int = Field(description="nodes: 0 or more (a System pool keeps at least 1), within the quota")


class PoolAutoscaler(_Request):
    """Turn on (or change) an AKS node pool's cluster autoscaler bounds."""
    kind: Literal["node-pool-autoscaler"] = "node-pool-autoscaler"
    pool: str = Field(description="the agent pool's name")
    min_count: int = Field(description="the autoscaler's fewest nodes (a System pool: 1 or more)")
    max_count: int = Field(description="the autoscaler's most nodes (within the quota)")


class ScaleUp(_Request):
    """Scale a service up within its bounds (what a CPU saturation alert asks for): more replicas, or a
    higher HPA maxReplicas when its HPA is already at its maximum."""
    kind: Literal["scale-up"] = "scale-up"
    service: str = Field(description="the catalog service")
    percent: int = Field(50, description="grow by this share of the current replicas (or HPA maximum)")


# A plain union (JSON schema `anyOf`, which the Prefect UI renders as a choice of forms): each member's `kind`
# literal and forbidden extra fields let exactly one validate.
ScaleRequest = Union[ServiceReplicas, HpaBounds, PoolCount, PoolAutoscaler, ScaleUp]


class ScalingPolicy(BaseModel):
    """An environment's scaling limits (catalog `scaling:`). A change beyond the blast radius needs the next
    approval level, even where the environment approves automatically."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_replicas: int | None = Field(None, ge=1, description="quota: most replicas (or HPA maxReplicas) per service")
    max_nodes: int | None = Field(None, ge=1, description="quota: most nodes in the cluster, all pools together")
    blast_radius_up: float = Field(2.0, gt=1, description="growing past this factor needs the next approval level")
    blast_radius_down: float = Field(0.5, gt=0, lt=1, description="shrinking below this share needs it too")

    def escalation(self, what: str, before: int, after: int) -> str | None:
        """Why going from `before` to `after` needs the next approval level, or None."""
        if after > max(before, 1) * self.blast_radius_up:
            return (f"{what} {before} -> {after} grows it more than {self.blast_radius_up:g}x (the environment's "
                    f"blast radius): it needs the next approval level")
        if after < before * self.blast_radius_down:
            return (f"{what} {before} -> {after} shrinks it below {self.blast_radius_down:.0%} (the environment's "
                    f"blast radius): it needs the next approval level")
        return None

    def check_replicas(self, what: str, value: int) -> None:
        if self.max_replicas is not None and value > self.max_replicas:
            raise PlanningError(f"{what} {value} is above the environment's quota of {self.max_replicas} replicas "
                                f"per service (catalog: scaling.max_replicas); allowed: up to {self.max_replicas}")


class ScalingDecision(BaseModel):
    """The plan, and what the procedure writes: replicas, HPA bounds, or pool settings (as planned from)."""
    plan: Plan
    replicas: int | None = None
    hpa_bounds: tuple[int, int] | None = None
    pool: PoolSettings | None = None
    expected_pool: PoolSettings | None = None


class ServiceView(BaseModel):
    """What the planner reads for a service: its Deployment and HPA, and the cluster's capacity."""
    deployment: DeploymentState
    hpa: HpaState | None = None
    nodes: list[NodeState] = []
    pods: list[PodLoad] = []
    pdbs: list[PdbState] = []


def plan_service(request: ServiceReplicas | HpaBounds | ScaleUp, target: DeploymentTarget, view: ServiceView,
                 policy: ScalingPolicy, *, hpa_target: HpaTarget | None = None) -> ScalingDecision:
    """Plan a service request (replicas, HPA bounds, or a scale-up within bounds)."""
    if isinstance(request, ScaleUp):
        resolved = scale_up(request, view, policy)
        if isinstance(resolved, str):
            return noop_decision(hpa_target or target, resolved, [])
        request = resolved
    if isinstance(request, HpaBounds):
        if view.hpa is None or hpa_target is None:
            raise PlanningError(f"service {target.service} ({target.resource}) has no HorizontalPodAutoscaler; "
                                f"set its replicas instead (target kind: replicas)")
        return _plan_hpa(request, hpa_target, view, policy)
    return _plan_replicas(request, target, view, policy)


def scale_up(request: ScaleUp, view: ServiceView, policy: ScalingPolicy) -> ServiceReplicas | HpaBounds | str:
    """What "scale up" means now: more replicas, or (an HPA at its maximum) a higher maximum; never past
    the quota. An HPA still below its maximum is left to scale on its own (the reason is returned)."""
    if request.percent <= 0:
        raise PlanningError(f"percent must be more than 0, not {request.percent}")
    hpa, current = view.hpa, view.deployment.replicas
    grown = (lambda n: max(n + 1, math.ceil(n * (100 + request.percent) / 100)))
    if hpa is not None:
        if current < hpa.max_replicas:
            return (f"HPA {hpa.name} runs {request.service} at {current} of at most {hpa.max_replicas} replicas: "
                    f"it is still free to scale up on its own")
        wanted, what = grown(hpa.max_replicas), "HPA maxReplicas"
    else:
        wanted, what = grown(current), "replicas"
    ceiling = policy.max_replicas if policy.max_replicas is not None else wanted
    if min(wanted, ceiling) <= (hpa.max_replicas if hpa else current):
        raise PlanningError(f"cannot scale {request.service} up: its {what} is already at the environment's quota of "
                            f"{policy.max_replicas} (catalog: scaling.max_replicas); raise the quota or add capacity")
    wanted = min(wanted, ceiling)
    if hpa is not None:
        return HpaBounds(service=request.service, min_replicas=hpa.min_replicas, max_replicas=wanted)
    return ServiceReplicas(service=request.service, replicas=wanted)


def template_pod(deployment: DeploymentState) -> PodLoad:
    """A new replica as the scheduler will see it (requests, nodeSelector, tolerations of the template)."""
    spec = deployment.template.get("spec") or {}
    labels = (deployment.template.get("metadata") or {}).get("labels") or {}
    return PodLoad(namespace=deployment.namespace, name=deployment.name, node=None, labels=labels,
                   requests=pod_requests(spec), node_selector=spec.get("nodeSelector") or {},
                   tolerations=spec.get("tolerations") or [])


def check_room(target_label: str, deployment: DeploymentState, more: int, view: ServiceView) -> str:
    """Evidence that `more` new replicas fit; PlanningError naming the pool to grow when they do not."""
    room = room_for(template_pod(deployment), more, view.nodes, view.pods)
    if room.enough:
        return f"capacity: {room.detail}"
    if room.pool is None:
        raise PlanningError(f"{more} more replicas of {target_label} do not fit: {room.detail}; no node pool can "
                            f"take them: add capacity first")
    count = sum(1 for n in view.nodes if n.pool == room.pool)
    raise PlanningError(f"{more} more replicas of {target_label} do not fit: {room.detail}. Node pool {room.pool} "
                        f"must grow first, by {room.grow_by} node(s): scale it from {count} to {count + room.grow_by} "
                        f"(target kind: node-pool), then scale the service")


def _plan_replicas(request: ServiceReplicas, target: DeploymentTarget, view: ServiceView,
                   policy: ScalingPolicy) -> ScalingDecision:
    wanted, current, hpa = request.replicas, view.deployment.replicas, view.hpa
    if wanted < 0:
        raise PlanningError(f"replicas must be 0 or more, not {wanted}")
    if hpa is not None and not hpa.min_replicas <= wanted <= hpa.max_replicas:
        side = "above its maxReplicas" if wanted > hpa.max_replicas else "below its minReplicas"
        raise PlanningError(f"replicas {wanted} is {side} (HPA {hpa.namespace}/{hpa.name} keeps {target.service} "
                            f"within {hpa.min_replicas}-{hpa.max_replicas}, and would scale it back); allowed: "
                            f"{hpa.min_replicas}-{hpa.max_replicas}, or change the HPA's bounds (target kind: hpa)")
    policy.check_replicas("replicas", wanted)
    evidence = [f"{target.resource}: {current} replicas wanted, {view.deployment.ready_replicas} ready"]
    if hpa is not None:
        evidence.append(f"HPA {hpa.name} bounds {hpa.min_replicas}-{hpa.max_replicas}: it may change the count later")
    if wanted == current:
        return noop_decision(target, f"{target.resource} already has {wanted} replicas", evidence)
    if wanted > current:
        evidence.append(check_room(target.resource, view.deployment, wanted - current, view))
    change = Change(resource=target.resource, field="spec.replicas", before=current, after=wanted)
    summary = f"Scale {target.resource} from {current} to {wanted} replicas."
    plan = Plan(runbook=RUNBOOK, target=target, summary=summary, changes=[change], evidence=evidence,
                escalation=policy.escalation(f"{target.resource} replicas", current, wanted))
    return ScalingDecision(plan=plan, replicas=wanted)


def _plan_hpa(request: HpaBounds, target: HpaTarget, view: ServiceView, policy: ScalingPolicy) -> ScalingDecision:
    hpa, low, high = view.hpa, request.min_replicas, request.max_replicas
    assert hpa is not None
    if low < 1:
        raise PlanningError(f"min_replicas must be 1 or more (autoscaling/v2 minReplicas), not {low}")
    if high < low:
        raise PlanningError(f"max_replicas {high} is below min_replicas {low}; allowed: {low} or more")
    policy.check_replicas("max_replicas", high)
    before, after = f"{hpa.min_replicas}-{hpa.max_replicas}", f"{low}-{high}"
    evidence = [f"HPA {hpa.namespace}/{hpa.name} bounds {before}; {target.resource} scales deployment "
                f"{hpa.target} (now {view.deployment.replicas} replicas)"]
    if (low, high) == (hpa.min_replicas, hpa.max_replicas):
        return noop_decision(target, f"HPA {hpa.name} already has bounds {after}", evidence)
    if low > view.deployment.replicas:
        evidence.append(check_room(target.resource, view.deployment, low - view.deployment.replicas, view))
    change = Change(resource=target.resource, field="spec.minReplicas-maxReplicas", before=before, after=after)
    escalation = (policy.escalation(f"HPA {hpa.name} maxReplicas", hpa.max_replicas, high)
                  or policy.escalation(f"HPA {hpa.name} minReplicas", hpa.min_replicas, low))
    plan = Plan(runbook=RUNBOOK, target=target, summary=f"Set the bounds of {target.resource} from {before} to "
                                                        f"{after}.", changes=[change], evidence=evidence,
                escalation=escalation)
    return ScalingDecision(plan=plan, hpa_bounds=(low, high))


def noop_decision(target, reason: str, evidence: list[str]) -> ScalingDecision:
    return ScalingDecision(plan=Plan(runbook=RUNBOOK, target=target, summary=f"Nothing to do: {reason}.",
                                     noop_reason=reason, evidence=evidence))
