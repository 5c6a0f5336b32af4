"""Runbook: Chaos Drill. Scheduled reliability testing: prove a service survives a controlled fault.

Purpose: game days and failure injection. Inject one small, reversible fault into a service (delete a share
of its pods, cordon and drain a node that runs it, scale it down, roll out a crash-looping release, inject
errors or latency in front of it where the cluster allows, or take a node away from an AKS node pool), watch
its steady-state hypothesis while the fault is in place, restore, and leave a scorecard. A drill must never become the outage.
Approval required: the environment's policy; production drills always need one approver (even where the
environment auto-approves other runbooks); staging drills may run unattended, on a schedule.
Estimated time: the experiment's duration plus about a minute.
Prerequisites: the experiment file is in the catalog's experiments folder (ours, or a Chaos Toolkit experiment
using only the actions and probes the README maps) or given in the form; the service is in the catalog and
meets its steady-state hypothesis now; no freeze window overlaps the drill; no other run holds the service's
lock (one drill per service at a time). A node-pool fault: the environment is an AKS cluster in the catalog,
the pool's count is manual (not its autoscaler's) and a System pool keeps a node.
Blast radius: one fault on one service, capped by the catalog's `chaos.blast_radius` (a share of the service's
pods and of the schedulable nodes); a drill that would take away more is refused before any write.
Procedure: preflight (validate the experiment, the guards, read the service and its nodes, check the
hypothesis: an unhealthy service is not drilled), plan (a dry run stops here with zero writes), approval gate,
inject the fault (its restore is registered first and always runs), then watch the abort conditions through
the Kubernetes watch API for the duration: a broken tolerance aborts at once (noticed within a second).
Verification: the hypothesis held throughout the fault; after the restore the service is back (its pods
Ready, nodes schedulable, its image and replica count as before) and the hypothesis holds again.
Rollback: the restore always runs: after the duration, on abort, on any failure and when the run is
cancelled. Scale back, uncordon, roll the template back, remove the injected fault, put a node pool's exact
previous count back (then wait for ARM's operation and the pool's nodes Ready); deleted or evicted pods are
replaced by their ReplicaSet and the restore waits for them.
Post-incident: the scorecard (time to detect, time to recover, hypothesis before/during/after, pass or fail)
as a new version of the service's scorecard artifact and in the run report, which the kernel publishes and
notifies like every runbook's.
"""
from __future__ import annotations

import datetime as dt

from kubernetes.client import AppsV1Api, CoreV1Api

from flows.chaos_faults import PoolFault, inject
from flows.kernel import Runbook, runbook_flow
from plans.chaos import (RUNBOOK, Experiment, ExperimentError, HealthRatio, check_blast_radius, check_drill_window,
                         drill_policy, drill_state, plan_drill)
from plans.record import Check, RunRecord
from plans.scorecard import Scorecard
from tasks.chaos_experiments import load_experiment
from tasks.errors import GuardRefused
from tasks.kubernetes.deployments import read_deployment
from tasks.kubernetes.nodes import list_schedulable_nodes
from tasks.kubernetes.pods import list_pods
from tasks.kubernetes.service_proxy import can_inject_proxy_faults
from tasks.scorecard import publish_scorecard
from tasks.steady_state import SteadyStateWatch, check_steady_state, watch_steady_state


@runbook_flow(name=RUNBOOK, description="Chaos Drill: inject a reversible fault, watch the hypothesis, restore.")
def chaos_drill(environment: str, requested_by: str, experiment_file: str = "", experiment: Experiment | None = None,
                service: str = "", reason: str = "", dry_run: bool = False) -> RunRecord:
    """Chaos Drill: prove a service survives a controlled fault; the fault is always restored.

    Args:
        environment: Environment from the catalog (staging, production, ...). Required: there is no default.
        requested_by: Who asks for this drill (your name, or the schedule). They may not approve it.
        experiment_file: An experiment file in the catalog's experiments folder (ours or Chaos Toolkit's).
        experiment: The experiment itself, from the form (instead of experiment_file).
        service: Catalog service to drill; needed for a Chaos Toolkit experiment, which names none.
        reason: Why: the game day, the ticket.
        dry_run: Plan only: check the hypothesis, publish the plan and change nothing.
    """
    card: Scorecard | None = None
    target = None
    try:
        with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, reason=reason or "game day",
                     dry_run=dry_run) as run:
            # 1. Preflight: the experiment (validated before anything else), its own guards, then the kernel's.
            drill = load_experiment(run.catalog, environment, experiment_file=experiment_file,
                                    experiment=experiment, service=service)
            check_drill_window(environment, run.environment.freeze_windows, now=_now(),
                               seconds=drill.duration_seconds + run.environment.verify_timeout_seconds)
            target = run.guard(run.catalog.deployment_target(environment, drill.service))
            pool = PoolFault.preflight(run, drill.fault)       # node-pool-scale-in: AKS only, planned and guarded
            apps, core = AppsV1Api(run.kubernetes), CoreV1Api(run.kubernetes)
            deployment = read_deployment(apps, namespace=target.namespace, name=target.deployment)
            pods = list_pods(core, namespace=target.namespace, selector=deployment.selector)
            state = drill_state(replicas=deployment.replicas, images=deployment.images, pods=pods,
                                schedulable_nodes=list_schedulable_nodes(core))
            state = pool.drill_state(state) if pool else state
            run.before({"replicas": state.replicas, "ready": state.ready, "images": state.images,
                        "nodes": state.pods_by_node}, f"{state.ready}/{state.replicas} ready on "
                                                      f"{len(state.pods_by_node)} node(s)")
            health_url = run.catalog.service(environment, drill.service).health_url
            card = Scorecard(experiment=drill.title, service=drill.service, environment=environment,
                             fault=drill.fault.kind, run_id=run.record.run_id, started_at=_now())
            hypothesis = dict(namespace=target.namespace, selector=deployment.selector, replicas=state.replicas,
                              health_url=health_url)
            _preflight_checks(run, drill, card, core, hypothesis)

            # 2. Plan: the fault, for how long, and what aborts it. A dry run ends here.
            notes = [check_blast_radius(drill.fault, state, run.catalog.blast_radius())]
            if run.stop_after_plan(plan_drill(drill, target, state, notes)):
                return run.record

            # 3. Approval gate: production drills always need a person.
            policy = drill_policy(run.environment.production, run.environment.approval.policy)
            run.approve(run.environment.approval.model_copy(update={"policy": policy}))

            # 4. Procedure: inject the fault, watched from just before it; its restore is the kernel's undo
            #    and always runs. 5. During: a broken abort condition ends the wait at once.
            with SteadyStateWatch(core, probes=drill.watched, max_seconds=drill.duration_seconds + 60,
                                  **hypothesis) as watch:
                inject(run, drill, target, state, deployment, card, apps, core,
                       after=lambda: _after(card, core, drill, hypothesis), pool=pool)
                seen = watch_steady_state(watch, seconds=drill.duration_seconds)
            card.observed(seen, seen.as_check())
            run.verify(lambda: card.during)
    finally:
        if card is not None and card.injected_at is not None:
            card.outcome = run.record.outcome
            publish_scorecard(card, target_key=target.key)
    return run.record


def _preflight_checks(run: Runbook, drill: Experiment, card: Scorecard, core: CoreV1Api, hypothesis: dict) -> None:
    """The hypothesis before the fault (an unhealthy service is not drilled) and what the fault needs."""
    if any(isinstance(p, HealthRatio) and not (p.url or hypothesis["health_url"]) for p in drill.watched
           + drill.hypothesis):
        raise ExperimentError(f"a health-ratio probe needs a url: the experiment gives none and service "
                              f"{drill.service!r} has no health_url in the catalog")
    if drill.fault.kind == "api-fault" and not can_inject_proxy_faults(run.kubernetes):
        raise GuardRefused("fault api-fault: this cluster cannot inject errors or latency in front of a service "
                           "(only the sandbox can; on AKS use a service mesh's fault injection)")
    card.before = check_steady_state(core, probes=drill.hypothesis, phase="before", **hypothesis)
    run.evidence(*[f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in card.before])
    failed = [f"{c.name} ({c.detail})" for c in card.before if not c.passed]
    if failed:
        raise GuardRefused(f"service {drill.service!r} does not meet its steady-state hypothesis before the "
                           f"drill, so the drill does not start: {'; '.join(failed)}")


def _after(card: Scorecard, core: CoreV1Api, drill: Experiment, hypothesis: dict) -> list[Check]:
    """After the restore: the hypothesis again; the scorecard goes into the run report too."""
    card.after += check_steady_state(core, probes=drill.hypothesis, phase="after", **hypothesis)
    return card.after


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
