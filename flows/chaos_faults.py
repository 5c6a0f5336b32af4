"""The chaos drill's faults, each a small reversible step on the kernel: `run.apply(..., undo=..., always_undo=True)`.

The restore is registered with the fault itself, so the kernel runs it on every exit: after the duration,
on abort, on failure, and when the run is cancelled. Every restore is then verified: the service is back
(its pods Ready, waited for through a watch), the fault's own state is back (node schedulable, image,
replicas), and the hypothesis holds again; the scorecard records the time it took.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from kubernetes.client import AppsV1Api, CoreV1Api

from flows.kernel import Runbook
from flows.scaling_steps import PoolScaling
from plans.chaos import (ApiFault, CrashloopImage, Experiment, Fault, NodeDrain, NodePoolScaleIn, PodKill, ScaleDown,
                         DrillState, choose_node, crashloop_template, pods_to_kill)
from plans.kubernetes import DeploymentState
from plans.record import Check
from plans.scaling import PoolCount, ScalingDecision
from plans.scorecard import Scorecard
from plans.targets import DeploymentTarget
from tasks.kubernetes.deployments import patch_deployment_template, read_deployment, scale_deployment
from tasks.kubernetes.nodes import cordon_node, read_node_unschedulable
from tasks.kubernetes.pods import delete_pods, evict_pods
from tasks.kubernetes.service_proxy import add_proxy_fault, remove_proxy_fault
from tasks.steady_state import wait_until_recovered

RECOVER_SECONDS = 120


def inject(run: Runbook, drill: Experiment, target: DeploymentTarget, state: DrillState,
           deployment: DeploymentState, card: Scorecard, apps: AppsV1Api, core: CoreV1Api, *,
           after: Callable[[], list[Check]], pool: "PoolFault | None" = None) -> None:
    """Make the drill's fault, each write with its restore registered (always run) and verified."""
    fault, changes, ns, name = drill.fault, run.record.plan.changes, target.namespace, target.deployment

    def restore(undo: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def undo_and_time(result: Any) -> Any:
            card.restored_at = card.restored_at or time.time()
            return undo(result)
        return undo_and_time

    def verified(*own: Callable[[], Check]) -> Callable[[Any], list[Check]]:
        def checks(_result: Any) -> list[Check]:
            back = wait_until_recovered(core, namespace=ns, selector=deployment.selector, replicas=state.replicas,
                                        timeout_seconds=RECOVER_SECONDS)
            card.recovered_seconds = time.time() - (card.restored_at or time.time())
            result = [back, *[check() for check in own], *after()]
            run.evidence(*card.lines())
            return result
        return checks

    def injected(action: Callable[[], Any]) -> Callable[[], Any]:
        def write() -> Any:
            card.injected_at = card.injected_at or time.time()
            return action()
        return write

    if isinstance(fault, PodKill):
        run.apply(changes[0], injected(lambda: delete_pods(core, namespace=ns, names=pods_to_kill(fault, state.pods))),
                  undo=restore(lambda _r: None), undo_text="nothing to write back: the ReplicaSet replaces the "
                  "deleted pods, and the restore waits until they are Ready", verify_undo=verified(), always_undo=True)
    elif isinstance(fault, ScaleDown):
        scale_to = fault.replicas
        run.apply(changes[0], injected(lambda: scale_deployment(apps, namespace=ns, name=name, replicas=scale_to)),
                  undo=restore(lambda r: scale_deployment(apps, namespace=ns, name=name, replicas=r.previous_replicas)),
                  undo_text=f"scale back to {state.replicas}", always_undo=True,
                  verify_undo=verified(lambda: _replicas_are(apps, ns, name, state.replicas)))
    elif isinstance(fault, NodeDrain):
        _drain(run, choose_node(fault, state), state, core, injected, restore, verified)
    elif isinstance(fault, CrashloopImage):
        broken = crashloop_template(deployment.template, fault.container)
        run.apply(changes[0], injected(lambda: patch_deployment_template(
            apps, namespace=ns, name=name, expected_template=deployment.template, template=broken,
            annotations=deployment.annotations)),
            undo=restore(lambda r: patch_deployment_template(
                apps, namespace=ns, name=name, expected_template=broken, template=r.previous_template,
                annotations=r.previous_annotations)),
            undo_text="roll the pod template back to the release before the drill", always_undo=True,
            verify_undo=verified(lambda: _images_are(apps, ns, name, deployment.images)))
    elif isinstance(fault, ApiFault):
        front = fault.kubernetes_service or name
        run.apply(changes[0], injected(lambda: add_proxy_fault(
            run.kubernetes, namespace=ns, service=front, status=fault.status, latency_seconds=fault.latency_seconds,
            share=fault.share)),
            undo=restore(lambda r: remove_proxy_fault(run.kubernetes, fault_id=r.id)),
            undo_text="remove the injected fault", always_undo=True, verify_undo=verified())
    elif isinstance(fault, NodePoolScaleIn):
        if pool is None:
            raise RuntimeError("node-pool-scale-in needs its preflight (PoolFault.preflight) before inject()")
        # scale-service's PUT with If-Match, ARM's operation and its undo (the exact previous count, then the
        # pool's nodes Ready): registered before the wait, and always run.
        pool.scaling.apply(pool.decision.model_copy(update={"plan": run.record.plan}), always_undo=True,
                           injected=injected, restored=restore, verified=verified())


class PoolFault:
    """node-pool-scale-in's preflight: the pool guarded too (locked like the service), read from ARM and the
    cluster, and planned by scale-service's planner, so its refusals apply before any write: an autoscaled
    pool, a System pool at its minimum, a drain that would strand pods or meet a PDB. AKS environments only
    (a kubeconfig environment is refused, naming the environments on AKS)."""

    def __init__(self, run: Runbook, fault: NodePoolScaleIn) -> None:
        # The count is planned by fewer(): `count=0` only names the pool to read.
        self.scaling = PoolScaling(run, PoolCount(pool=fault.pool, count=0), guard=run.guard_also)
        self.decision: ScalingDecision = self.scaling.fewer(fault.nodes)
        view = self.scaling.view
        run.evidence(*self.decision.plan.evidence)
        self.count = view.pool.count
        self.nodes = sorted(n.name for n in view.nodes if n.pool == fault.pool)

    @classmethod
    def preflight(cls, run: Runbook, fault: Fault) -> "PoolFault | None":
        return cls(run, fault) if isinstance(fault, NodePoolScaleIn) else None

    def drill_state(self, state: DrillState) -> DrillState:
        """The drill's state with the pool's count and nodes (for the blast radius and the plan)."""
        return state.model_copy(update={"pool_count": self.count, "pool_nodes": self.nodes})


def _drain(run: Runbook, node: str, state: DrillState, core: CoreV1Api, injected, restore, verified) -> None:
    """Cordon, then evict the service's pods from the node: two writes, the cordon undone by an uncordon."""
    cordon, evict = run.record.plan.changes
    run.apply(cordon, injected(lambda: cordon_node(core, name=node)),
              undo=restore(lambda _r: cordon_node(core, name=node, unschedulable=False)),
              undo_text=f"uncordon {node}", always_undo=True,
              verify_undo=verified(lambda: _schedulable(core, node)))
    namespace = run.record.target.namespace
    evicted = run.apply(evict, lambda: evict_pods(core, namespace=namespace, names=state.pods_by_node[node]),
                        undo=restore(lambda _r: None), always_undo=True,
                        undo_text="nothing to write back: the ReplicaSet replaces evicted pods on other nodes")
    if evicted.refused:
        run.evidence(f"a PodDisruptionBudget kept {', '.join(evicted.refused)} on {node} (eviction refused)")


def _replicas_are(apps: AppsV1Api, namespace: str, name: str, replicas: int) -> Check:
    now = read_deployment(apps, namespace=namespace, name=name).replicas
    return Check(name="replicas restored", passed=now == replicas, detail=f"spec.replicas {now} (before: {replicas})")


def _images_are(apps: AppsV1Api, namespace: str, name: str, images: dict[str, str]) -> Check:
    now = read_deployment(apps, namespace=namespace, name=name).images
    return Check(name="image restored", passed=now == images, detail=f"images {now} (before: {images})")


def _schedulable(core: CoreV1Api, node: str) -> Check:
    cordoned = read_node_unschedulable(core, name=node)
    return Check(name="node schedulable", passed=not cordoned, detail=f"{node} unschedulable={cordoned}")
