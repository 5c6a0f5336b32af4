"""The steps of scale-service for each kind of target, so the flow body in flows/scaling.py reads like the runbook.

`ServiceScaling` (a Deployment's replicas, or its HPA's bounds) and `PoolScaling` (an AKS agent pool's count or
autoscaler bounds) each do the runbook's steps for their kind: preflight (guards and reads, on construction),
plan, one write with the undo that restores the exact previous value, the watched checks, and what to do
when they fail. They only orchestrate tasks: no SDK call here either.
"""
from __future__ import annotations

from typing import Any, Callable

from kubernetes.client import AppsV1Api, AutoscalingV2Api, CoreV1Api, PolicyV1Api

from flows.kernel import Runbook
from plans.pool_scaling import PoolView, plan_pool
from plans.pools import PoolSettings
from plans.plan import PlanningError
from plans.record import Check
from plans.scaling import PoolAutoscaler, PoolCount, ScaleRequest, ScalingDecision, ServiceReplicas, ServiceView, \
    plan_service
from plans.targets import NodePoolTarget
from tasks.azure.agentpools import (PoolWrite, get_agent_pool, list_agent_pools, restore_agent_pool,
                                    scale_agent_pool, set_pool_autoscaler, wait_for_pool_operation)
from tasks.azure.clusters import get_cluster
from tasks.kubernetes.autoscalers import HpaBoundsChange, find_hpa, set_hpa_bounds
from tasks.kubernetes.capacity import list_nodes, list_pdbs, list_pod_loads
from tasks.kubernetes.deployments import ScaleResult, read_deployment, scale_deployment
from tasks.verification import count_ready_pods, deployment_rollout_complete, hpa_settled, pool_nodes_ready

Wrap = Callable[[Callable], Callable]


def _same(action: Callable) -> Callable:
    return action


def preflight(run: Runbook, request: ScaleRequest) -> "ServiceScaling | PoolScaling":
    """Guard the object the request changes and read what the plan needs (read-only)."""
    if isinstance(request, (PoolCount, PoolAutoscaler)):
        return PoolScaling(run, request)
    return ServiceScaling(run, request)


class ServiceScaling:
    """A service's replicas (the Deployment's scale subresource) or its HPA's bounds (a tested JSON patch)."""

    def __init__(self, run: Runbook, request) -> None:
        self.run, self.request = run, request
        env = run.environment_name
        self.target = run.guard(run.catalog.deployment_target(env, request.service))
        self.apps, self.core = AppsV1Api(run.kubernetes), CoreV1Api(run.kubernetes)
        self.autoscaling = AutoscalingV2Api(run.kubernetes)
        hpa = find_hpa(self.autoscaling, namespace=self.target.namespace, deployment=self.target.deployment)
        self.hpa_target = run.catalog.hpa_target(env, request.service, hpa.name) if hpa else None
        if self.hpa_target is not None and not isinstance(request, ServiceReplicas):
            run.guard_also(self.hpa_target)        # its bounds are what changes, and they move the replicas
        self.view = ServiceView(
            deployment=read_deployment(self.apps, namespace=self.target.namespace, name=self.target.deployment),
            hpa=hpa, nodes=list_nodes(self.core), pods=list_pod_loads(self.core),
            pdbs=list_pdbs(PolicyV1Api(run.kubernetes), namespace=self.target.namespace))

    def state(self) -> dict[str, Any]:
        view = self.view
        state: dict[str, Any] = {"replicas": view.deployment.replicas, "ready": view.deployment.ready_replicas}
        if view.hpa is not None:
            state["hpa"] = f"{view.hpa.min_replicas}-{view.hpa.max_replicas}"
        return state

    def summary(self) -> str:
        hpa = self.view.hpa
        return f"{self.target.resource}: {self.view.deployment.replicas} replicas" + (
            f", HPA {hpa.min_replicas}-{hpa.max_replicas}" if hpa else "")

    def plan(self) -> ScalingDecision:
        return plan_service(self.request, self.target, self.view, self.run.environment.scaling,
                            hpa_target=self.hpa_target)

    def apply(self, decision: ScalingDecision) -> None:
        """One write, its undo registered with what the write returned (the exact previous value)."""
        apps, ns, change = self.apps, self.target.namespace, decision.plan.changes[0]
        if decision.replicas is not None:
            name, current = self.target.deployment, self.view.deployment.replicas
            self.run.apply(change, lambda: scale_deployment(apps, namespace=ns, name=name, replicas=decision.replicas,
                                                            expected=current),
                           undo=lambda res: scale_deployment(apps, namespace=ns, name=name,
                                                             replicas=res.previous_replicas),
                           undo_text=f"scale {self.target.resource} back to {current} replicas",
                           verify_undo=lambda res: self._replicas_checks(res.previous_replicas),
                           interrupted=lambda: ScaleResult(changed=True, previous_replicas=current,
                                                           replicas=decision.replicas))
            return
        api, name, (low, high) = self.autoscaling, self.hpa_target.hpa, decision.hpa_bounds
        before = (self.view.hpa.min_replicas, self.view.hpa.max_replicas)
        self.run.apply(change, lambda: set_hpa_bounds(api, namespace=ns, name=name, min_replicas=low,
                                                      max_replicas=high, expected=before),
                       undo=lambda res: set_hpa_bounds(api, namespace=ns, name=name, min_replicas=res.previous_min,
                                                       max_replicas=res.previous_max),
                       undo_text=f"put {self.hpa_target.resource}'s bounds back to {before[0]}-{before[1]}",
                       verify_undo=lambda res: self._hpa_checks((res.previous_min, res.previous_max)),
                       interrupted=lambda: HpaBoundsChange(changed=True, previous_min=before[0], previous_max=before[1],
                                                           min_replicas=low, max_replicas=high))

    def checks(self, decision: ScalingDecision) -> list[Check]:
        if decision.replicas is not None:
            return self._replicas_checks(decision.replicas)
        return self._hpa_checks(decision.hpa_bounds)

    def next_steps(self, decision: ScalingDecision) -> list[str]:
        ns, name = self.target.namespace, self.target.deployment
        if decision.replicas is not None:
            return [f"{self.target.resource} did not reach {decision.replicas} Ready replicas within the deadline "
                    f"and was scaled back to {self.view.deployment.replicas}. Inspect: kubectl -n {ns} get pods; "
                    f"kubectl -n {ns} describe deploy/{name} (FailedScheduling events mean the nodes are full)"]
        (low, high), hpa = decision.hpa_bounds, self.view.hpa
        return [f"{self.hpa_target.resource} did not settle within {low}-{high} before the deadline; its bounds "
                f"were put back to {hpa.min_replicas}-{hpa.max_replicas}. Inspect: kubectl -n {ns} describe "
                f"hpa/{hpa.name}"]

    def after(self) -> dict[str, Any]:
        ns, name = self.target.namespace, self.target.deployment
        self.view = self.view.model_copy(update={
            "deployment": read_deployment(self.apps, namespace=ns, name=name),
            "hpa": find_hpa(self.autoscaling, namespace=ns, deployment=name)})
        return self.state()

    def _replicas_checks(self, replicas: int) -> list[Check]:
        """The rollout completes (watched), the Deployment wants `replicas`, and that many pods are Ready."""
        ns, name = self.target.namespace, self.target.deployment
        checks = [deployment_rollout_complete(self.apps, namespace=ns, name=name,
                                              timeout_seconds=self.run.environment.verify_timeout_seconds)]
        state = read_deployment(self.apps, namespace=ns, name=name)
        checks.append(Check(name="replicas", passed=state.replicas == replicas,
                            detail=f"{self.target.resource} wants {state.replicas} replicas (expected {replicas})"))
        if checks[0].passed:
            checks.append(count_ready_pods(self.core, namespace=ns, selector=state.selector, expected=replicas))
        return checks

    def _hpa_checks(self, bounds: tuple[int, int]) -> list[Check]:
        """The HPA has the bounds, has settled (watched), and the Deployment's rollout completes (watched)."""
        ns, timeout, label = self.target.namespace, self.run.environment.verify_timeout_seconds, \
            self.hpa_target.resource
        hpa = find_hpa(self.autoscaling, namespace=ns, deployment=self.target.deployment)
        checks = [Check(name="HPA bounds", passed=hpa is not None and (hpa.min_replicas, hpa.max_replicas) == bounds,
                        detail=f"{label} bounds {hpa.min_replicas}-{hpa.max_replicas} (expected {bounds[0]}-"
                               f"{bounds[1]})" if hpa else f"{label} is gone")]
        checks.append(hpa_settled(self.autoscaling, self.apps, namespace=ns, name=self.hpa_target.hpa,
                                  timeout_seconds=timeout))
        if hpa is not None and checks[-1].passed:
            checks.append(deployment_rollout_complete(self.apps, namespace=ns, name=hpa.target,
                                                      timeout_seconds=timeout))
        return checks


class PoolScaling:
    """An AKS agent pool: GET, change and PUT the whole pool with If-Match, then wait for ARM's operation."""

    def __init__(self, run: Runbook, request: PoolCount | PoolAutoscaler, *,
                 guard: Callable[[NodePoolTarget], NodePoolTarget] | None = None) -> None:
        self.run, self.request = run, request
        self.target = (guard or run.guard)(run.catalog.node_pool_target(run.environment_name, request.pool))
        self.cluster, self.arm = run.aks_cluster, run.azure
        self.where = dict(resource_group=self.cluster.resource_group, cluster=self.cluster.name)
        get_cluster(self.arm, resource_group=self.cluster.resource_group, name=self.cluster.name)
        pool = get_agent_pool(self.arm, pool=request.pool, **self.where)
        self.core = CoreV1Api(run.kubernetes)
        self.view = PoolView(pool=pool, pools=list_agent_pools(self.arm, **self.where), nodes=list_nodes(self.core),
                             pods=list_pod_loads(self.core), pdbs=list_pdbs(PolicyV1Api(run.kubernetes)))

    def state(self) -> dict[str, Any]:
        return {"pool": self.view.pool.settings.model_dump(), "provisioning_state": self.view.pool.provisioning_state}

    def summary(self) -> str:
        return f"{self.target.resource}: {self.view.pool.settings.describe()}"

    def plan(self) -> ScalingDecision:
        return plan_pool(self.request, self.target, self.view, self.run.environment.scaling)

    def fewer(self, nodes: int) -> ScalingDecision:
        """Plan `nodes` fewer nodes than the pool has now (a chaos drill's fault), with a count's refusals
        (an autoscaled pool, a System pool at its minimum, a drain that strands pods or meets a PDB)."""
        self.request = PoolCount(pool=self.target.pool, count=self.view.pool.count - nodes)
        if self.view.pool.count < nodes:
            raise PlanningError(f"node pool {self.target.pool} has {self.view.pool.count} node(s): none to take away")
        return self.plan()

    def apply(self, decision: ScalingDecision, *, always_undo: bool = False, injected: Wrap = _same,
              restored: Wrap = _same, verified: Callable[[PoolWrite], list[Check]] | None = None) -> None:
        """The PUT, its undo (after the operation ends, Failed included: that is what it repairs) registered
        before the wait, so an operation that ends Failed, or a cancel during the wait, is undone. A drill
        passes `always_undo`, its own timing wrappers and the checks it adds to the undo's verification."""
        arm, where, request, poll = self.arm, self.where, self.request, self.cluster.operation_poll_seconds
        if isinstance(request, PoolCount):
            def write():
                return scale_agent_pool(arm, pool=request.pool, count=request.count, expected=decision.expected_pool,
                                        **where)
        else:
            def write():
                return set_pool_autoscaler(arm, pool=request.pool, min_count=request.min_count,
                                           max_count=request.max_count, expected=decision.expected_pool, **where)
        self.run.apply(decision.plan.changes[0], injected(write),
                       complete=lambda w: wait_for_pool_operation(arm, write=w, poll_seconds=poll, **where),
                       undo=restored(lambda w: wait_for_pool_operation(
                           arm, write=restore_agent_pool(arm, write=w, poll_seconds=poll, **where),
                           poll_seconds=poll, **where)),
                       undo_text=f"put {self.target.resource} back to {self.view.pool.settings.describe()}",
                       verify_undo=lambda w: self._checks(w.previous) + (verified(w) if verified else []),
                       always_undo=always_undo,
                       interrupted=lambda: PoolWrite(pool=request.pool, changed=True, previous=decision.expected_pool,
                                                     requested=decision.pool))

    def checks(self, decision: ScalingDecision) -> list[Check]:
        return self._checks(decision.pool)

    def next_steps(self, decision: ScalingDecision) -> list[str]:
        pool, cluster = self.target.pool, self.cluster.name
        return [f"{self.target.resource} did not verify and was put back to {self.view.pool.settings.describe()}.",
                f"Inspect: kubectl get nodes -l kubernetes.azure.com/agentpool={pool}; az aks nodepool show "
                f"--cluster-name {cluster} --name {pool} (provisioningState, and the operation's error in the "
                f"activity log); pods Pending with FailedScheduling events need capacity elsewhere first."]

    def after(self) -> dict[str, Any]:
        self.view = self.view.model_copy(update={"pool": get_agent_pool(self.arm, pool=self.target.pool,
                                                                        **self.where)})
        return self.state()

    def _checks(self, wanted: PoolSettings) -> list[Check]:
        """ARM says the pool has the settings and succeeded; exactly its count of nodes are Ready (watched); the
        environment's services are still available (watched)."""
        run, timeout = self.run, self.run.environment.verify_timeout_seconds
        pool = get_agent_pool(self.arm, pool=self.target.pool, **self.where)
        checks = [Check(name="pool settings", passed=pool.settings == wanted and pool.provisioning_state == "Succeeded",
                        detail=f"{self.target.resource}: {pool.settings.describe()}, {pool.provisioning_state} "
                               f"(expected {wanted.describe()})"),
                  pool_nodes_ready(self.core, pool=self.target.pool, expected=pool.count, timeout_seconds=timeout)]
        apps = AppsV1Api(run.kubernetes)
        for name in sorted(run.environment.services):
            service = run.catalog.deployment_target(run.environment_name, name)
            check = deployment_rollout_complete(apps, namespace=service.namespace, name=service.deployment,
                                                timeout_seconds=timeout)
            checks.append(check.model_copy(update={"name": f"{name} available"}))
        return checks
