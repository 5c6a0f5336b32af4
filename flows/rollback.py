"""Runbook: Emergency Rollback. Quickly revert a service to a known-good state.

Purpose: a release is failing (crash loops, a stuck rollout, errors after a deploy, an alert). Restore an
earlier revision's pod template the way `kubectl rollout undo` does, prove the service is healthy again,
and leave a report.
Approval required: the environment's policy (the on-call lead in production; never the requester).
Estimated time: 5 to 15 minutes by hand; about a minute as a runbook.
Prerequisites: the service is in the catalog; its Deployment exists and has an earlier revision; no change
freeze is in force (or an emergency override with a reason is given); no other run is changing it; no
change was made to it within the environment's cooldown.
Blast radius: one Deployment in one namespace.
Procedure: a service whose catalog names a rollback workflow rolls back through it: the run dispatches it
with its inputs and a correlation id (never while a run of it is queued or running), follows the run it
started to completion with a deadline, then verifies the service as below. Otherwise: preflight (read the Deployment, its ReplicaSets and pods; check the guards), plan (which
revision is bad and which to restore; a dry run stops here with zero writes), approval gate, then one
JSON patch that restores the chosen revision's template and annotations, guarded by a `test` of the
template the plan was made from. The decision rests on evidence, not on pod health: a run started by
hand rolls back the current revision even when its pods look healthy (the gate shows that they do),
unless the current revision is itself the result of a rollback (then it changes nothing and says so;
`target_revision` goes further back). A run started by an alert treats the revision that was current
when the alert began firing as the bad one, and changes nothing when a newer revision has rolled out
since. No run ever rolls back to a revision that a rollback rolled away from.
Verification: the rollout completes (the rule `kubectl rollout status` uses, watched, with a deadline),
every pod is Ready and runs the restored images, and the health URL answers 2xx when one is configured.
Rollback: none by design: undoing a rollback would roll forward to the release it replaced. If
verification fails the run fails, and its report says what state the service is in and what to do next.
Post-incident: the run report (trigger, requester, approvals, plan, changes, before/after, evidence,
timeline) is a Prefect artifact; the environment's channels are told of gates, escalations and outcomes;
where the service has a GitHub repository, its incident issue (one per incident) gets the report and the
rollback is recorded as a deployment status.
"""
from __future__ import annotations

from kubernetes.client import AppsV1Api, CoreV1Api

from flows.kernel import Runbook, runbook_flow
from flows.rollback_workflow import rollback_through_workflow
from flows.service_checks import service_checks
from plans.kubernetes import readiness_by_revision
from plans.record import RunRecord
from plans.rollback import (RUNBOOK, RollbackDecision, check_pod_belongs, next_steps_after_failure,
                            plan_rollback)
from plans.targets import DeploymentTarget
from plans.trigger import AlertContext
from tasks.kubernetes.deployments import deployment_of_pod, list_replica_sets, patch_deployment_template, read_deployment
from tasks.kubernetes.pods import list_events, list_pods

NO_UNDO = "a rollback is never undone: that would roll forward to the release it replaced"


@runbook_flow(name=RUNBOOK, description="Emergency Rollback: quickly revert a service to a known-good state.")
def emergency_rollback(environment: str, service: str, requested_by: str, reason: str = "",
                       target_revision: int | None = None, dry_run: bool = False,
                       emergency_override: str | None = None, pod: str = "",
                       alert: AlertContext | None = None) -> RunRecord:
    """Emergency Rollback: restore an earlier known-good revision of a service, verified and reported.

    Args:
        environment: Environment from the catalog (production, staging, ...). Required: there is no default.
        service: Service name from the catalog, e.g. payments-api.
        requested_by: Who asks for this run (your name). They may not approve it themselves.
        reason: Why roll back: the incident, alert or ticket.
        target_revision: Revision to restore. Default: the newest earlier revision not rolled back from.
        dry_run: Plan only: publish the plan and change nothing.
        emergency_override: A reason to proceed inside a change freeze; it is recorded in the report.
        pod: A pod of the service named by an alert; the run checks it belongs to the service's Deployment.
        alert: The alert that started the run; set by the alert receiver, leave empty by hand.
    """
    with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, reason=reason, dry_run=dry_run,
                 emergency_override=emergency_override, alert=alert) as run:
        # 1. Preflight (read-only): the guards, then the Deployment, its revisions and its pods.
        target = run.guard(run.catalog.deployment_target(environment, service))
        apps, core = AppsV1Api(run.kubernetes), CoreV1Api(run.kubernetes)
        if pod:
            run.record.note("preflight", check_pod_belongs(deployment_of_pod(apps, core, namespace=target.namespace,
                                                                             pod=pod), target, pod))
        state = read_deployment(apps, namespace=target.namespace, name=target.deployment)
        revisions = list_replica_sets(apps, namespace=target.namespace, deployment=state)
        pods = list_pods(core, namespace=target.namespace, selector=state.selector)
        run.before({"revision": state.revision, "images": state.images, "pods": readiness_by_revision(revisions, pods)},
                   f"revision {state.revision}, {state.available_replicas}/{state.replicas} available")

        # 2. Plan: through the service's release workflow when the catalog names one (flows/rollback_workflow.py),
        #    else which revision is bad and which to restore. A dry run or a no-op ends here.
        svc = run.catalog.service(environment, service)
        if svc.github and svc.github.rollback_workflow:
            rollback_through_workflow(run, apps, core, target, state, svc.github_repo, svc.github.rollback_workflow,
                                      svc.health_url)
            return run.record
        decision = plan_rollback(target, state, revisions, pods, target_revision=target_revision, trigger=run.record.trigger)
        if run.stop_after_plan(decision.plan):
            return run.record

        # 3. Approval gate: the plan, with the evidence it rests on.
        run.approve()

        # 4. Procedure: restore the chosen revision's template, guarded by the one the plan was made from.
        run.apply(decision.plan.changes[0], lambda: patch_deployment_template(
            apps, namespace=target.namespace, name=target.deployment, expected_template=state.template,
            template=decision.template, annotations=decision.annotations), no_undo=NO_UNDO)

        # 5. Verification: watch the rollout, then count Ready pods and ask the health URL.
        run.verify(lambda: service_checks(apps, core, target, selector=state.selector, replicas=state.replicas,
                                          timeout_seconds=run.environment.verify_timeout_seconds,
                                          images=decision.to_revision.images, health_url=svc.health_url),
                   explain=lambda: _next_steps(run, core, target, decision, [p.name for p in pods]))
        after = read_deployment(apps, namespace=target.namespace, name=target.deployment)
        run.after({"revision": after.revision, "images": after.images})
    return run.record


def _next_steps(run: Runbook, core: CoreV1Api, target: DeploymentTarget, decision: RollbackDecision,
                pods: list[str]) -> list[str]:
    events = list_events(core, namespace=target.namespace, names=[target.deployment, *pods])
    run.evidence(*[f"event {e.type} {e.reason} {e.object}: {e.message}" for e in events[-5:]])
    return next_steps_after_failure(target, decision)
