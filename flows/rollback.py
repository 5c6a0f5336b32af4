"""Runbook: Emergency Rollback. Quickly revert a service to a known-good state.

Purpose: a release is failing (crash loops, a stuck rollout, an alert). Restore the previous revision's
pod template the way `kubectl rollout undo` does, prove the service is healthy again, and leave a report.
Approval required: the environment's policy (the on-call lead in production; never the requester).
Estimated time: 5 to 15 minutes by hand; about a minute as a runbook.
Prerequisites: the service is in the catalog; its Deployment exists and has an earlier revision; no change
freeze is in force (or an emergency override with a reason is given); no other run is changing it; no
change was made to it within the environment's cooldown.
Blast radius: one Deployment in one namespace.
Procedure: preflight (read the Deployment, its ReplicaSets and pods; check the guards), plan (from revision
N to revision M, what `kubectl rollout undo` would do; a dry run stops here with zero writes), approval
gate, then one JSON patch that restores revision M's template and annotations, guarded by a `test` of the
template the plan was made from. A healthy current revision with no target revision changes nothing: an
alert that fires twice must not undo the fix.
Verification: the rollout completes (the rule `kubectl rollout status` uses, watched, with a deadline),
every pod is Ready and runs the restored images, and the health URL answers 2xx when one is configured.
Rollback: it never rolls forward to the bad release. If verification fails the run fails, and its report
says what state the service is in and what to do next.
Post-incident: the run report (trigger, requester, approvals, plan, before/after, evidence, timeline) is a
Prefect artifact; the environment's notification channels are told of gates, escalations and outcomes.
"""
from __future__ import annotations

import datetime as dt

from kubernetes.client import AppsV1Api, CoreV1Api
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.approval import request_approval
from tasks.catalog import load_catalog
from tasks.clients import kubernetes_client
from tasks.errors import ApprovalRejected, GuardRefused, RunbookError, VerificationFailed
from tasks.guards import check_cooldown, check_freeze, record_change, target_lock
from tasks.kubernetes.deployments import list_replica_sets, patch_deployment_template, read_deployment
from tasks.kubernetes.pods import list_events, list_pods
from tasks.models import RunRecord, Target, Trigger
from tasks.redaction import install_redaction
from tasks.report import notify, publish_report
from tasks.rollback_plan import RUNBOOK, plan_rollback
from tasks.verification import count_ready_pods, deployment_rollout_complete, health_url_answers

LOCK_WAIT_SECONDS = 30


@flow(name=RUNBOOK, description="Emergency Rollback: quickly revert a service to a known-good state.")
def emergency_rollback(
    service: str,
    environment: str = "production",
    reason: str = "",
    requested_by: str = "",
    target_revision: int | None = None,
    dry_run: bool = False,
    emergency_override: str | None = None,
    alert: str = "",
) -> RunRecord:
    """Emergency Rollback: restore the previous known-good revision of a service, verified and reported.

    Args:
        service: Service name from the catalog, e.g. payments-api.
        environment: Environment from the catalog (production, staging, ...).
        reason: Why roll back: the incident, alert or ticket.
        requested_by: Who asks for this run. They may not approve it themselves.
        target_revision: Revision to restore. Default: the one before the current revision.
        dry_run: Plan only: publish the plan and change nothing.
        emergency_override: A reason to proceed inside a change freeze; it is recorded in the report.
        alert: The alert that started the run; set by the alert receiver's rules, leave empty by hand.
    """
    install_redaction()
    log = get_run_logger()
    log.info("%s started for %s/%s", RUNBOOK, environment, service)
    record = RunRecord(runbook=RUNBOOK, requested_by=requested_by or "unknown", reason=reason, trigger=_trigger(alert),
                       dry_run=dry_run, emergency_override=emergency_override)
    env = None
    try:
        # 1. Preflight (read-only): resolve the target, check the guards.
        catalog = load_catalog()
        env = catalog.environment(environment)
        svc = catalog.service(environment, service)
        target = Target(environment=environment, service=service, namespace=svc.namespace,
                        deployment=svc.deployment)
        record.target = target
        api = kubernetes_client(env)
        apps, core = AppsV1Api(api), CoreV1Api(api)
        override_note = check_freeze(environment, env, now=dt.datetime.now(dt.timezone.utc),
                                     emergency_override=emergency_override)
        if override_note:
            record.note("preflight", override_note)
        with target_lock(target, wait_seconds=LOCK_WAIT_SECONDS, holder=str(flow_run.id)):
            if not dry_run:
                check_cooldown(target, cooldown_seconds=env.cooldown_seconds, now=dt.datetime.now(dt.timezone.utc))
            state = read_deployment(apps, namespace=target.namespace, name=target.deployment)
            revisions = list_replica_sets(apps, namespace=target.namespace, deployment=state)
            pods = list_pods(core, namespace=target.namespace, selector=state.selector)
            record.before = {"revision": state.revision, "images": state.images,
                             "available": f"{state.available_replicas}/{state.replicas}",
                             "pods": [f"{p.name} {p.waiting_reason or p.phase} restarts={p.restarts}" for p in pods]}
            record.note("preflight", f"{target.key}: revision {state.revision}, "
                                     f"{state.available_replicas}/{state.replicas} available")

            # 2. Plan. A dry run ends here, with zero write calls.
            decision = plan_rollback(target, state, revisions, target_revision, rehearse=dry_run)
            record.plan = decision.plan
            record.note("plan", decision.plan.summary)
            log.info("plan %s: %s", decision.plan.digest, decision.plan.summary)
            if decision.plan.is_noop or dry_run:
                record.outcome = "no-op" if decision.plan.is_noop else "dry-run"
                return _finish(record, env)

            # 3. Approval gate.
            record.approvals = request_approval(decision.plan, policy=env.approval, requested_by=requested_by,
                                                on_event=lambda event, text: notify(
                                                    env, event, text, subject=f"{RUNBOOK} {target.key}"))
            record.note("approval", ", ".join(f"{a.decision} by {a.approver}" for a in record.approvals))

            # 4. Procedure: restore the chosen revision's template (idempotent, guarded by the plan).
            change = patch_deployment_template(apps, namespace=target.namespace, name=target.deployment,
                                               expected_template=state.template, template=decision.template,
                                               annotations=decision.annotations)
            record.note("procedure", "pod template restored" if change.changed else "template already in place")

            # 5. Verification: watch the rollout, then count Ready pods and ask the health URL.
            checks = [deployment_rollout_complete(apps, namespace=target.namespace, name=target.deployment,
                                                  timeout_seconds=env.verify_timeout_seconds)]
            if checks[0].passed:
                checks.append(count_ready_pods(core, namespace=target.namespace, selector=state.selector,
                                               expected=state.replicas, images=decision.to_revision.images))
                if svc.health_url:
                    checks.append(health_url_answers(svc.health_url, timeout_seconds=60))
            record.evidence = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks]
            record.note("verification", "passed" if all(c.passed for c in checks) else "failed")
            after = read_deployment(apps, namespace=target.namespace, name=target.deployment)
            record.after = {"revision": after.revision, "images": after.images,
                            "available": f"{after.available_replicas}/{after.replicas}"}

            # A change was made: start the target's cooldown (after verification, so it never delays it).
            if change.changed:
                record_change(target, run=str(flow_run.id), at=dt.datetime.now(dt.timezone.utc))

            # 6. If verification fails: never roll forward to the bad release; say what to do next.
            if not all(c.passed for c in checks):
                events = list_events(core, namespace=target.namespace,
                                     names=[target.deployment] + [p.name for p in pods])
                record.evidence += [f"event {e.type} {e.reason} {e.object}: {e.message}" for e in events[-5:]]
                record.outcome = "failed"
                record.next_steps = _next_steps(target, after.revision, decision.to_revision.revision)
                raise VerificationFailed("; ".join(c.detail for c in checks if not c.passed))
            record.outcome = "succeeded"
            return _finish(record, env)
    except (ApprovalRejected, GuardRefused) as exc:
        record.outcome = "rejected" if isinstance(exc, ApprovalRejected) else "refused"
        record.note("stopped", str(exc))
        _finish(record, env)
        raise
    except RunbookError as exc:
        if record.outcome != "failed":
            record.outcome = "failed"
        record.note("failed", str(exc))
        _finish(record, env)
        raise


def _trigger(alert: str) -> Trigger:
    """Alert rules pass the alert; Prefect tags runs its schedules create with `auto-scheduled`."""
    if alert:
        return Trigger(kind="alert", detail=alert)
    if "auto-scheduled" in (flow_run.tags or []):
        return Trigger(kind="schedule", detail=f"scheduled run {flow_run.name}")
    return Trigger(kind="manual", detail="Prefect UI, CLI or API")


def _finish(record: RunRecord, env) -> RunRecord:
    """7. Post-incident: the report as an artifact, a notification, and the record returned."""
    record.note("report", f"outcome: {record.outcome}")
    publish_report(record)
    if env is not None:
        event = "failure" if record.outcome in ("failed", "refused") else "success"
        target = record.target.key if record.target else "?"
        notify(env, event, f"{RUNBOOK} on {target}: {record.outcome}", subject=f"{RUNBOOK} {target}")
    return record


def _next_steps(target: Target, revision: int, restored: int) -> list[str]:
    ns, name = target.namespace, target.deployment
    return [f"The Deployment now runs revision {revision} (the template of revision {restored}); it was not "
            "rolled forward to the bad release.",
            f"Inspect: kubectl -n {ns} rollout status deploy/{name}; kubectl -n {ns} get pods; "
            f"kubectl -n {ns} describe deploy/{name}",
            "If the known-good revision is failing too, the cause is probably outside the release "
            "(config, dependencies, nodes): escalate to the service owner.",
            "Run again with target_revision=N to choose an older revision."]
