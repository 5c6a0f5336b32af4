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

from flows.kernel import Runbook, runbook_flow
from flows.scaling_steps import preflight
from plans.record import RunRecord
from plans.scaling import RUNBOOK, ScaleRequest
from plans.trigger import AlertContext


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
        # 1. Preflight (read-only): the guards on what changes, then the Deployment, its HPA, the nodes, pods and
        #    PDBs (for a node pool: the AKS cluster and its pools from ARM, and the nodes, pods and PDBs).
        scaling = preflight(run, target)
        run.before(scaling.state(), scaling.summary())

        # 2. Plan: within range, the HPA's and the pool's bounds and the quota; capacity for new replicas; a
        #    scale-in strands no pod and meets no PDB; an autoscaled pool is refused with what to do instead.
        #    A dry run or a no-op ends here, with zero writes.
        decision = scaling.plan()
        if run.stop_after_plan(decision.plan):
            return run.record

        # 3. Approval gate: the environment's policy, one level higher beyond its blast radius.
        run.approve()

        # 4. Procedure: one write (for a pool, then ARM's operation); its undo restores the exact previous value.
        scaling.apply(decision)

        # 5. Verification, watched within the environment's deadline: replicas Ready, HPA settled, nodes Ready.
        #    A failed check undoes the write and verifies the target is back.
        run.verify(lambda: scaling.checks(decision), explain=lambda: scaling.next_steps(decision))
        run.after(scaling.after())
    return run.record
