"""Runbook: Scale Service. Scale a service, its autoscaler's bounds, or an AKS node pool, within limits.

Purpose: a service needs more (or fewer) replicas, its HorizontalPodAutoscaler needs other bounds, or a node
pool needs more capacity (or costs too much after a spike): make the change within the environment's
limits, prove it took, and put it back if it did not.
Approval required: the environment's policy (the on-call lead in production); a change beyond the
environment's blast radius (default more than 2x up or below 50% down) needs the next level, even where
the environment approves automatically.
Estimated time: 10 to 20 minutes by hand; a few minutes as a runbook (a node pool waits for its VMs).
Prerequisites: the service is in the catalog (a node pool: the environment is an AKS cluster in the catalog
and the pool exists); no change freeze (or an emergency override); no other run is changing the same
object; nothing changed it within the cooldown; `DefaultAzureCredential` can reach the cluster's ARM.
Blast radius: one Deployment's replicas, one HPA's bounds (and so its Deployment's replicas), or one agent
pool's node count or autoscaler bounds (and the pods on nodes a scale-in removes).
Procedure: preflight (read the Deployment, its HPA, the nodes, pods and PodDisruptionBudgets; for a pool, the
cluster and its pools from ARM), plan (the value must be within range: not below 0, within the HPA's
bounds, a System pool keeps a node, within the environment's quota; new replicas must fit the nodes'
allocatable CPU and memory, else the plan names the pool to grow first; a scale-in must leave room for the
pods it moves and no PDB may block its drain; a pool whose autoscaler owns its count is refused with what
to do instead; a dry run stops here with zero writes), approval gate, then one write: the Deployment's
scale subresource, a JSON patch of the HPA's bounds that tests the bounds it replaces, or GET, change and
PUT of the whole agent pool with If-Match on its eTag, followed by waiting for ARM's operation.
Verification: watched, not polled, within the environment's deadline: the rollout completes and every
replica is Ready; the HPA has observed its bounds and settled; the pool's operation succeeded and exactly
its count of nodes are Ready, and the environment's services are still available.
Rollback: the kernel's undo puts back the exact previous value (replicas, HPA bounds, or the pool's count
and autoscaler settings) when verification fails, when ARM's operation ends Failed, or when the run is
cancelled, then verifies the target is back.
Post-incident: the run report (plan with its capacity evidence, approvals, before/after, checks) is a
Prefect artifact; the environment's channels are told of gates, escalations and outcomes.
"""
from __future__ import annotations

from kubernetes.client import AppsV1Api, AutoscalingV2Api, CoreV1Api, PolicyV1Api

from flows.kernel import Runbook, runbook_flow
from plans.pool_scaling import PoolView, plan_pool
from plans.pools import PoolSettings
from plans.record import Check, RunRecord
from plans.scaling import (RUNBOOK, PoolAutoscaler, PoolCount, ScaleRequest, ScalingDecision, ServiceReplicas,
                           ServiceView, plan_service)
from plans.targets import DeploymentTarget, HpaTarget, NodePoolTarget
from plans.trigger import AlertContext
from tasks.azure.agentpools import (get_agent_pool, list_agent_pools, restore_agent_pool, scale_agent_pool,
                                    set_pool_autoscaler, wait_for_pool_operation)
from tasks.azure.clusters import get_cluster
from tasks.kubernetes.autoscalers import find_hpa, set_hpa_bounds
from tasks.kubernetes.capacity import list_nodes, list_pdbs, list_pod_loads
from tasks.kubernetes.deployments import read_deployment, scale_deployment
from tasks.verification import count_ready_pods, deployment_rollout_complete, hpa_settled, pool_nodes_ready


@runbook_flow(name=RUNBOOK, description="Scale Service: a service's replicas, its HPA's bounds, or an AKS node pool.")
def scale_service(*, environment: str, requested_by: str, target: ScaleRequest, reason: str = "",
                  dry_run: bool = False, emergency_override: str | None = None,
                  alert: AlertContext | None = None) -> RunRecord:
    """Scale Service: change replicas, HPA bounds or a node pool within limits, verified, undone on failure.

    Args:
        environment: Environment from the catalog (production, staging, ...). Required: there is no default.
        requested_by: Who asks for this run (your name). They may not approve it themselves.
        target: What to scale, by kind: replicas {service, replicas}; hpa {service, min_replicas,
            max_replicas}; node-pool {pool, count}; node-pool-autoscaler {pool, min_count, max_count};
            scale-up {service, percent} (what a CPU saturation alert asks for).
        reason: Why: the incident, alert, ticket or cost report.
        dry_run: Plan only: publish the plan and change nothing.
        emergency_override: A reason to proceed inside a change freeze; it is recorded in the report.
        alert: The alert that started the run; set by the alert receiver, leave empty by hand.
    """
    with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, reason=reason, dry_run=dry_run,
                 emergency_override=emergency_override, alert=alert) as run:
        if isinstance(target, (PoolCount, PoolAutoscaler)):
            _scale_pool(run, target)
        else:
            _scale_service(run, target)
    return run.record


# -- a service: replicas or HPA bounds ---------------------------------------------------------------------

def _scale_service(run: Runbook, request) -> None:
    """Preflight, plan, gate, one write with its undo, watched verification."""
    env = run.environment_name
    service = run.guard(run.catalog.deployment_target(env, request.service))
    apps, core = AppsV1Api(run.kubernetes), CoreV1Api(run.kubernetes)
    autoscaling = AutoscalingV2Api(run.kubernetes)
    hpa = find_hpa(autoscaling, namespace=service.namespace, deployment=service.deployment)
    hpa_target = run.catalog.hpa_target(env, request.service, hpa.name) if hpa else None
    if hpa_target is not None and not isinstance(request, ServiceReplicas):
        run.guard_also(hpa_target)                   # its bounds are what changes, and they move the replicas
    view = ServiceView(deployment=read_deployment(apps, namespace=service.namespace, name=service.deployment),
                       hpa=hpa, nodes=list_nodes(core), pods=list_pod_loads(core),
                       pdbs=list_pdbs(PolicyV1Api(run.kubernetes), namespace=service.namespace))
    run.before(_service_state(view), f"{service.resource}: {view.deployment.replicas} replicas"
               + (f", HPA {hpa.min_replicas}-{hpa.max_replicas}" if hpa else ""))
    decision = plan_service(request, service, view, run.environment.scaling, hpa_target=hpa_target)
    if run.stop_after_plan(decision.plan):
        return
    run.approve()
    if decision.replicas is not None:
        _apply_replicas(run, apps, core, service, decision, view.deployment.replicas)
    else:
        _apply_hpa_bounds(run, apps, autoscaling, hpa_target, decision, (hpa.min_replicas, hpa.max_replicas))
    after = read_deployment(apps, namespace=service.namespace, name=service.deployment)
    hpa_after = find_hpa(autoscaling, namespace=service.namespace, deployment=service.deployment)
    run.after(_service_state(view.model_copy(update={"deployment": after, "hpa": hpa_after})))


def _apply_replicas(run: Runbook, apps: AppsV1Api, core: CoreV1Api, target: DeploymentTarget,
                    decision: ScalingDecision, current: int) -> None:
    ns, name, wanted = target.namespace, target.deployment, decision.replicas
    run.apply(decision.plan.changes[0],
              lambda: scale_deployment(apps, namespace=ns, name=name, replicas=wanted, expected=current),
              undo=lambda res: scale_deployment(apps, namespace=ns, name=name, replicas=res.previous_replicas),
              undo_text=f"scale {target.resource} back to {current} replicas",
              verify_undo=lambda res: _replicas_checks(run, apps, core, target, res.previous_replicas))
    run.verify(lambda: _replicas_checks(run, apps, core, target, wanted),
               explain=lambda: [f"{target.resource} did not reach {wanted} Ready replicas within the deadline and "
                                f"was scaled back to {current}. Inspect: kubectl -n {ns} get pods; kubectl -n {ns} "
                                f"describe deploy/{name} (FailedScheduling events mean the nodes are full)"])


def _replicas_checks(run: Runbook, apps: AppsV1Api, core: CoreV1Api, target: DeploymentTarget,
                     replicas: int) -> list[Check]:
    timeout = run.environment.verify_timeout_seconds
    checks = [deployment_rollout_complete(apps, namespace=target.namespace, name=target.deployment,
                                          timeout_seconds=timeout)]
    state = read_deployment(apps, namespace=target.namespace, name=target.deployment)
    checks.append(Check(name="replicas", passed=state.replicas == replicas,
                        detail=f"{target.resource} wants {state.replicas} replicas (expected {replicas})"))
    if checks[0].passed:
        checks.append(count_ready_pods(core, namespace=target.namespace, selector=state.selector, expected=replicas))
    return checks


def _apply_hpa_bounds(run: Runbook, apps: AppsV1Api, autoscaling: AutoscalingV2Api, target: HpaTarget,
                      decision: ScalingDecision, before: tuple[int, int]) -> None:
    ns, name, (low, high) = target.namespace, target.hpa, decision.hpa_bounds
    run.apply(decision.plan.changes[0],
              lambda: set_hpa_bounds(autoscaling, namespace=ns, name=name, min_replicas=low, max_replicas=high,
                                     expected=before),
              undo=lambda res: set_hpa_bounds(autoscaling, namespace=ns, name=name, min_replicas=res.previous_min,
                                              max_replicas=res.previous_max),
              undo_text=f"put {target.resource}'s bounds back to {before[0]}-{before[1]}",
              verify_undo=lambda res: _hpa_checks(run, apps, autoscaling, target, (res.previous_min, res.previous_max)))
    run.verify(lambda: _hpa_checks(run, apps, autoscaling, target, (low, high)),
               explain=lambda: [f"{target.resource} did not settle within {low}-{high} before the deadline; its bounds "
                                f"were put back to {before[0]}-{before[1]}. Inspect: kubectl -n {ns} describe hpa/{name}"])


def _hpa_checks(run: Runbook, apps: AppsV1Api, autoscaling: AutoscalingV2Api, target: HpaTarget,
                bounds: tuple[int, int]) -> list[Check]:
    timeout = run.environment.verify_timeout_seconds
    deployment = run.catalog.service(target.environment, target.service).deployment
    hpa = find_hpa(autoscaling, namespace=target.namespace, deployment=deployment)
    checks = [Check(name="HPA bounds", passed=hpa is not None and (hpa.min_replicas, hpa.max_replicas) == bounds,
                    detail=f"{target.resource} bounds {hpa.min_replicas}-{hpa.max_replicas} (expected "
                           f"{bounds[0]}-{bounds[1]})" if hpa else f"{target.resource} is gone")]
    checks.append(hpa_settled(autoscaling, apps, namespace=target.namespace, name=target.hpa, timeout_seconds=timeout))
    if hpa is not None and checks[-1].passed:
        checks.append(deployment_rollout_complete(apps, namespace=target.namespace, name=hpa.target,
                                                  timeout_seconds=timeout))
    return checks


def _service_state(view: ServiceView) -> dict:
    state = {"replicas": view.deployment.replicas, "ready": view.deployment.ready_replicas}
    if view.hpa is not None:
        state["hpa"] = f"{view.hpa.min_replicas}-{view.hpa.max_replicas}"
    return state


# -- an AKS node pool: count or autoscaler bounds -------------------------------------------------------------

def _scale_pool(run: Runbook, request: PoolCount | PoolAutoscaler) -> None:
    """Preflight (ARM and the cluster's nodes), plan, gate, one PUT and its operation, watched verification."""
    target = run.guard(run.catalog.node_pool_target(run.environment_name, request.pool))
    cluster, arm = run.aks_cluster, run.azure
    where = dict(resource_group=cluster.resource_group, cluster=cluster.name)
    get_cluster(arm, resource_group=cluster.resource_group, name=cluster.name)
    pool = get_agent_pool(arm, pool=request.pool, **where)
    core = CoreV1Api(run.kubernetes)
    view = PoolView(pool=pool, pools=list_agent_pools(arm, **where), nodes=list_nodes(core),
                    pods=list_pod_loads(core), pdbs=list_pdbs(PolicyV1Api(run.kubernetes)))
    run.before({"pool": pool.settings.model_dump(), "provisioning_state": pool.provisioning_state},
               f"{target.resource}: {pool.settings.describe()}")
    decision = plan_pool(request, target, view, run.environment.scaling)
    if run.stop_after_plan(decision.plan):
        return
    run.approve()
    poll = cluster.operation_poll_seconds
    if isinstance(request, PoolCount):
        write = lambda: scale_agent_pool(arm, pool=request.pool, count=request.count,  # noqa: E731
                                         expected=decision.expected_pool, **where)
    else:
        write = lambda: set_pool_autoscaler(arm, pool=request.pool, min_count=request.min_count,  # noqa: E731
                                            max_count=request.max_count, expected=decision.expected_pool, **where)
    run.apply(decision.plan.changes[0], write,
              complete=lambda w: wait_for_pool_operation(arm, write=w, poll_seconds=poll, **where),
              undo=lambda w: wait_for_pool_operation(
                  arm, write=restore_agent_pool(arm, write=w, poll_seconds=poll, **where), poll_seconds=poll, **where),
              undo_text=f"put {target.resource} back to {pool.settings.describe()}",
              verify_undo=lambda w: _pool_checks(run, core, target, w.previous))
    run.verify(lambda: _pool_checks(run, core, target, decision.pool),
               explain=lambda: _pool_next_steps(target, pool.settings, cluster.name))
    run.after({"pool": get_agent_pool(arm, pool=request.pool, **where).settings.model_dump()})


def _pool_checks(run: Runbook, core: CoreV1Api, target: NodePoolTarget, wanted: PoolSettings) -> list[Check]:
    """ARM says the pool has the settings and succeeded; its nodes are Ready; the services still run."""
    cluster = run.aks_cluster
    pool = get_agent_pool(run.azure, resource_group=cluster.resource_group, cluster=cluster.name, pool=target.pool)
    timeout = run.environment.verify_timeout_seconds
    checks = [Check(name="pool settings", passed=pool.settings == wanted and pool.provisioning_state == "Succeeded",
                    detail=f"{target.resource}: {pool.settings.describe()}, {pool.provisioning_state} (expected "
                           f"{wanted.describe()})"),
              pool_nodes_ready(core, pool=target.pool, expected=pool.count, timeout_seconds=timeout)]
    apps = AppsV1Api(run.kubernetes)
    for name in sorted(run.environment.services):
        service = run.catalog.deployment_target(run.environment_name, name)
        check = deployment_rollout_complete(apps, namespace=service.namespace, name=service.deployment,
                                            timeout_seconds=timeout)
        checks.append(check.model_copy(update={"name": f"{name} available"}))
    return checks


def _pool_next_steps(target: NodePoolTarget, before: PoolSettings, cluster: str) -> list[str]:
    return [f"{target.resource} did not verify and was put back to {before.describe()}.",
            f"Inspect: kubectl get nodes -l kubernetes.azure.com/agentpool={target.pool}; az aks nodepool show "
            f"--cluster-name {cluster} --name {target.pool} (provisioningState, and the operation's error in the "
            f"activity log); pods Pending with FailedScheduling events need capacity elsewhere first."]
