"""Runbook: Toy Scale. A test runbook on the kernel, with an undo, and switches that break it on purpose.

Purpose: exercise every exit path of the kernel (success, no-op, dry run, refusal, rejection, timeout,
verification failure and undo, failed undo, unexpected errors of every kind, cancellation) on a real
Deployment in the sandbox.
Approval required: the environment's policy.
Estimated time: seconds.
Prerequisites: the service is in the catalog.
Blast radius: one Deployment's replica count.
Procedure: scale the Deployment to `replicas`, optionally wait `hold_seconds` (a window to cancel in).
Verification: the Deployment's spec has `replicas` (and fails on purpose with `fail_verification`).
Rollback: scale back to the previous count, then check it is back.
Post-incident: the kernel's report and notification.
"""
from __future__ import annotations

import time
import uuid

from kubernetes.client import AppsV1Api

from flows.kernel import Runbook, runbook_flow
from plans.plan import Change, Plan
from plans.record import Check, RunRecord
from tasks.errors import TransientError
from tasks.kubernetes.deployments import read_deployment, scale_deployment

RUNBOOK = "toy-scale"


@runbook_flow(name=RUNBOOK, description="A test runbook that scales a Deployment, with switches to break it.")
def scale_toy(environment: str, service: str, requested_by: str, replicas: int, dry_run: bool = False,
              hold_seconds: float = 0.0, fail_verification: bool = False, fail_undo: bool = False,
              raise_after_change: str = "", drill: bool = False) -> RunRecord:
    """Toy Scale: set a service's replica count, verify, undo on failure.

    Args:
        environment: Catalog environment.
        service: Catalog service.
        requested_by: Who asks.
        replicas: The replica count to set.
        dry_run: Plan only.
        hold_seconds: Wait this long after the change, before verifying (to cancel mid-change).
        fail_verification: Make verification fail.
        fail_undo: Make the undo fail.
        raise_after_change: After the change, raise: "bug" (ZeroDivisionError), "sdk" (a Kubernetes 404),
            "prefect" (a Prefect client error), "runbook" (a transient API error).
        drill: The change is a drill's fault: its undo always runs, also when verification passes.
    """
    with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, dry_run=dry_run) as run:
        target = run.guard(run.catalog.deployment_target(environment, service))
        apps = AppsV1Api(run.kubernetes)
        state = read_deployment(apps, namespace=target.namespace, name=target.deployment)
        run.before({"replicas": state.replicas}, f"{state.replicas} replicas")
        change = Change(resource=target.resource, field="spec.replicas", before=state.replicas, after=replicas)
        plan = Plan(runbook=RUNBOOK, target=target, summary=f"scale to {replicas}",
                    changes=[change] if replicas != state.replicas else [],
                    noop_reason=None if replicas != state.replicas else f"it already has {replicas} replicas")
        if run.stop_after_plan(plan):
            return run.record
        run.approve()

        def undo(result):
            if fail_undo:
                raise TransientError("the API server went away during the undo (on purpose)")
            scale_deployment(apps, namespace=target.namespace, name=target.deployment, replicas=result.previous_replicas)

        run.apply(change, lambda: scale_deployment(apps, namespace=target.namespace, name=target.deployment,
                                                   replicas=replicas),
                  undo=undo, undo_text=f"scale back to {state.replicas}",
                  verify_undo=lambda result: [_replicas_are(apps, target, result.previous_replicas)],
                  always_undo=drill)
        time.sleep(hold_seconds)
        _raise(raise_after_change, apps, target)
        run.verify(lambda: [_replicas_are(apps, target, replicas)]
                   + ([Check(name="on purpose", passed=False, detail="verification fails on purpose")]
                      if fail_verification else []))
    return run.record


def _replicas_are(apps: AppsV1Api, target, wanted: int) -> Check:
    now = read_deployment(apps, namespace=target.namespace, name=target.deployment).replicas
    return Check(name="replicas", passed=now == wanted, detail=f"{now} replicas (wanted {wanted})")


def _raise(kind: str, apps: AppsV1Api, target) -> None:
    if kind == "bug":
        _ = 1 / 0
    if kind == "sdk":
        apps.read_namespaced_deployment("no-such-deployment", target.namespace)
    if kind == "prefect":
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            client.read_flow_run(uuid.uuid4())
    if kind == "runbook":
        raise TransientError("the API kept answering 503 (on purpose)")
