"""Plans for AKS node pools: a manual count, or the cluster autoscaler's bounds. Pure.

Refused before anything is written, each with the limit named: a count or bound outside AKS's range (a
System pool keeps at least one node), past the environment's node quota, a manual count on a pool whose
autoscaler owns it (with what to do instead), a pool busy with another operation or stopped, and a
scale-in that would strand pods or block on a PodDisruptionBudget."""
from __future__ import annotations

from pydantic import BaseModel

from tasks.errors import ConflictError

from .capacity import drain_problems
from .cluster import NodeState, PdbState, PodLoad
from .plan import Change, Plan, PlanningError
from .pools import PoolSettings, PoolState, scale_in_victims
from .scaling import RUNBOOK, PoolAutoscaler, PoolCount, ScalingDecision, ScalingPolicy, noop_decision
from .targets import NodePoolTarget

AKS_MAX_COUNT = 1000                  # AKS: nodes per pool (and the autoscaler's maxCount)


class PoolView(BaseModel):
    """What the planner reads for a pool: the pool, its siblings (for the quota), and the cluster's nodes,
    pods and PDBs (for a scale-in's drain)."""
    pool: PoolState
    pools: list[PoolState]
    nodes: list[NodeState] = []
    pods: list[PodLoad] = []
    pdbs: list[PdbState] = []


def plan_pool(request: PoolCount | PoolAutoscaler, target: NodePoolTarget, view: PoolView,
              policy: ScalingPolicy) -> ScalingDecision:
    """Plan a node pool's new count, or its autoscaler's new bounds."""
    pool = view.pool
    if isinstance(request, PoolCount):
        _check_range(pool, "count", request.count)
        _check_quota(view, policy, request.count, "count")
        if pool.enable_auto_scaling:
            raise PlanningError(
                f"node pool {pool.name}'s count is owned by its cluster autoscaler (bounds {pool.min_count}-"
                f"{pool.max_count}, now {pool.count} nodes): a manual count would be overridden. Change the bounds "
                f"instead (target kind: node-pool-autoscaler, min_count/max_count), or turn the autoscaler off "
                f"first (az aks nodepool update --disable-cluster-autoscaler)")
        wanted = PoolSettings(count=request.count)
    else:
        _check_range(pool, "min_count", request.min_count)
        _check_range(pool, "max_count", request.max_count)
        if request.max_count < request.min_count:
            raise PlanningError(f"max_count {request.max_count} is below min_count {request.min_count}; allowed: "
                                f"{request.min_count} or more")
        _check_quota(view, policy, request.max_count, "max_count")
        wanted = PoolSettings(count=min(max(pool.count, request.min_count), request.max_count),
                              enable_auto_scaling=True, min_count=request.min_count, max_count=request.max_count)
    _check_ready(pool)
    return _decide(target, view, policy, wanted)


def _check_range(pool: PoolState, name: str, value: int) -> None:
    low = 1 if pool.mode == "System" else 0
    if not low <= value <= AKS_MAX_COUNT:
        why = f"node pool {pool.name} is a System pool: it keeps at least 1 node; " if pool.mode == "System" and \
            value < 1 else ""
        raise PlanningError(f"{why}{name} must be {low}-{AKS_MAX_COUNT} for node pool {pool.name} ({pool.mode} "
                            f"mode), not {value}")


def _check_quota(view: PoolView, policy: ScalingPolicy, value: int, name: str) -> None:
    if policy.max_nodes is None:
        return
    others = sum(p.count for p in view.pools if p.name != view.pool.name)
    if others + value > policy.max_nodes:
        raise PlanningError(f"{name} {value} would let the cluster reach {others + value} nodes ({others} in the other "
                            f"pools), above the environment's quota of {policy.max_nodes} (catalog: "
                            f"scaling.max_nodes); allowed: up to {max(policy.max_nodes - others, 0)}")


def _check_ready(pool: PoolState) -> None:
    if pool.busy:
        raise ConflictError(f"node pool {pool.name} is busy ({pool.provisioning_state}): AKS refuses a write while an "
                            f"operation runs; wait for it to end, then re-run")
    if pool.power_state != "Running":
        raise PlanningError(f"node pool {pool.name} is {pool.power_state}: start it first (az aks nodepool start)")


def _decide(target: NodePoolTarget, view: PoolView, policy: ScalingPolicy, wanted: PoolSettings) -> ScalingDecision:
    pool, now = view.pool, view.pool.settings
    members = sorted(n.name for n in view.nodes if n.pool == pool.name)
    ready = sum(1 for n in view.nodes if n.pool == pool.name and n.ready)
    evidence = [f"node pool {pool.name}: {pool.mode} mode, {pool.vm_size}, {now.describe()}, {ready}/{len(members)} "
                f"nodes Ready, provisioningState {pool.provisioning_state}"]
    if wanted == now:
        return noop_decision(target, f"node pool {pool.name} already has {now.describe()}", evidence)
    if wanted.count < now.count:
        victims = scale_in_victims(members, wanted.count)
        problems = drain_problems(victims, view.nodes, view.pods, view.pdbs)
        if problems:
            raise PlanningError(f"scaling node pool {pool.name} from {now.count} to {wanted.count} nodes would remove "
                                f"{', '.join(victims)}: " + "; ".join(problems) + ". Nothing was changed")
        evidence.append(f"scale-in removes {', '.join(victims) or 'no node'}: their pods fit on the nodes that stay, "
                        f"and no PodDisruptionBudget blocks the drain")
    field = "properties.count" if not wanted.enable_auto_scaling else \
        "properties.enableAutoScaling/minCount/maxCount"
    before, after = (now.count, wanted.count) if field == "properties.count" else (now.describe(), wanted.describe())
    change = Change(resource=target.resource, field=field, before=before, after=after)
    ceiling_now = now.max_count if now.enable_auto_scaling else now.count
    floor_now = now.min_count if now.enable_auto_scaling else now.count
    escalation = (policy.escalation(f"node pool {pool.name} nodes", ceiling_now or 0, wanted.max_count or wanted.count)
                  or policy.escalation(f"node pool {pool.name} nodes", floor_now or 0,
                                       wanted.min_count if wanted.enable_auto_scaling else wanted.count))
    summary = f"Change node pool {pool.name} from {now.describe()} to {wanted.describe()}."
    plan = Plan(runbook=RUNBOOK, target=target, summary=summary, changes=[change], evidence=evidence,
                escalation=escalation)
    return ScalingDecision(plan=plan, pool=wanted, expected_pool=now)
