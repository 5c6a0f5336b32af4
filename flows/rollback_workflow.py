"""Emergency Rollback through the service's release workflow (`gh workflow run <service>-rollback.yml -f ...`),
for services whose catalog names a rollback workflow: the platform's own pipeline rolls back, the runbook
dispatches it, follows the very run it started, and then verifies the service in the cluster as a kubectl
rollback is verified.

Why a correlation id: the dispatch API may answer 204 without saying which run it started, and other runs of
the same workflow can start in the same second. The dispatch carries a correlation id (an input the workflow
shows in its `run-name`), so the run is found by it when GitHub returns no run details; never "the newest run".
Why the guard on active runs: two rollbacks racing through one pipeline leave the service in whichever state
finished last, so while a run of the rollback workflow is queued or running no second one is dispatched.
"""
from __future__ import annotations

import datetime as dt

from kubernetes.client import AppsV1Api, CoreV1Api

from flows.ci_steps import inspect_failures
from flows.kernel import Runbook
from flows.service_checks import service_checks
from plans.kubernetes import DeploymentState
from plans.plan import Change, Plan
from plans.record import Check
from plans.rollback import RUNBOOK
from plans.targets import DeploymentTarget
from tasks.errors import GuardRefused
from tasks.github.settings import RollbackWorkflow
from tasks.github.workflows import Dispatch, dispatch_workflow, find_dispatched_run, list_active_runs
from tasks.github.runs import wait_for_run

NO_UNDO = "a rollback is never undone: that would roll forward to the release it replaced"


def workflow_inputs(workflow: RollbackWorkflow, *, reason: str, correlation_id: str) -> dict[str, str]:
    inputs = dict(workflow.inputs)
    if workflow.reason_input:
        inputs[workflow.reason_input] = reason or "emergency rollback"
    if workflow.correlation_input:
        inputs[workflow.correlation_input] = correlation_id
    return inputs


def refuse_if_running(run: Runbook, repository: str, workflow: RollbackWorkflow) -> None:
    """Raises GuardRefused while a run of the rollback workflow is queued or running."""
    active = list_active_runs(run.github, repository=repository, workflow=workflow.workflow)
    if active:
        raise GuardRefused(f"a run of {workflow.workflow} is {active[0].status} ({active[0].html_url}); a second "
                           "rollback is not dispatched while one is queued or running")


def rollback_through_workflow(run: Runbook, apps: AppsV1Api, core: CoreV1Api, target: DeploymentTarget,
                              state: DeploymentState, repository: str, workflow: RollbackWorkflow,
                              health_url: str | None) -> None:
    """Plan, gate, dispatch, follow the run, verify the service. Called from the rollback flow's body."""
    refuse_if_running(run, repository, workflow)
    correlation_id = f"rollback-{run.record.run_id or 'local'}"
    inputs = workflow_inputs(workflow, reason=run.record.reason, correlation_id=correlation_id)
    change = Change(resource=f"workflow {workflow.workflow} in {repository}", field="workflow_dispatch",
                    before=f"revision {state.revision} ({', '.join(sorted(state.images.values()))})",
                    after=f"rollback run on {workflow.ref}, correlation id {correlation_id}")
    plan = Plan(runbook=RUNBOOK, target=target, changes=[change], evidence=[f"inputs: {inputs}"],
                summary=f"dispatch {workflow.workflow} on {workflow.ref} to roll {target.label} back")
    if run.stop_after_plan(plan):
        return
    run.approve()
    since = dt.datetime.now(dt.timezone.utc)

    def dispatch() -> Dispatch:
        refuse_if_running(run, repository, workflow)        # again: time passed at the gate
        return dispatch_workflow(run.github, repository=repository, workflow=workflow.workflow, ref=workflow.ref,
                                 inputs=inputs, correlation_id=correlation_id, since=since,
                                 run_details=run.environment.github.run_details)
    sent = run.apply(change, dispatch, no_undo=NO_UNDO)
    started = find_dispatched_run(run.github, repository=repository, dispatch=sent, since=since)
    run.evidence(f"rollback workflow run {started.id}: {started.html_url}")
    run.verify(lambda: _checks(run, apps, core, target, state, repository, started.id, workflow, health_url))


def _checks(run: Runbook, apps: AppsV1Api, core: CoreV1Api, target: DeploymentTarget, state: DeploymentState,
            repository: str, run_id: int, workflow: RollbackWorkflow, health_url: str | None) -> list[Check]:
    finished = wait_for_run(run.github, repository=repository, run_id=run_id, timeout_seconds=workflow.timeout_seconds)
    if finished.status != "completed" or finished.conclusion != "success":
        where = "; ".join(f"job {f.job}, step {f.step or '?'}: {' | '.join(f.lines[-3:])}" for f in inspect_failures(
            run.github, repository=repository, runs=[finished], rerun_allowed=False)) if finished.failed else ""
        state_text = finished.conclusion or f"still {finished.status} after {workflow.timeout_seconds}s"
        return [Check(name="rollback workflow", passed=False,
                      detail=f"run {finished.html_url} {state_text}" + (f" at {where}" if where else ""))]
    return [Check(name="rollback workflow", passed=True, detail=f"run {finished.html_url} succeeded"),
            *service_checks(apps, core, target, selector=state.selector, replicas=state.replicas,
                            timeout_seconds=run.environment.verify_timeout_seconds, health_url=health_url)]
