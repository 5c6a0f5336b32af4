"""The emergency-rollback runbook end to end: a real flow under Prefect, the real client, the sandbox.

Every run reaches the sandbox as the `runbooks` ServiceAccount under the shipped RBAC (the `runbooks`
ClusterRole, aggregated from deployments/kubernetes/rbac/*.yaml), which the sandbox enforces: a call the
rollback's own ClusterRole does not grant fails the test that made it, and the last test fails when a grant
of that ClusterRole was never used (tests/rbac_helpers.py).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
from prefect.flow_runs import resume_flow_run
from prefect.logging.handlers import APILogHandler

from flows.rollback import emergency_rollback
from plans.trigger import AlertContext
from sandbox.server import DEMO_MANIFESTS
from tasks.errors import (AccessDenied, ApprovalRejected, ApprovalTimedOut, CatalogError, GuardRefused,
                          PermanentError, TargetNotFound, VerificationFailed)
from tasks.gate_answer import answer_gate
from tests.conftest import start_sandbox
from tests.rbac_helpers import (apply_shipped, assert_every_grant_used, calls, describe, rbac_ledger,  # noqa: F401
                                 runbooks_token, shipped, without)
from tests.runbook_helpers import (answered_at_gate, apps_api, release, run_in_thread, wait_healthy,
                                   write_catalog)

from .sandbox.kubectl_helpers import Kubectl, kubectl_binary

GOOD = "ghcr.io/example/payments-api:1.4.2"
BAD = "ghcr.io/example/payments-api:1.5.0-crashloop"
SERVES_500S = "ghcr.io/example/payments-api:1.5.0"          # Ready, but (in the story) answers 500s
RBAC_ROLE = "runbooks-emergency-rollback"                   # deployments/kubernetes/rbac/emergency-rollback.yaml
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def catalog(demo_sandbox, tmp_path, monkeypatch, runbooks_token):
    """Point RUNBOOKS_CATALOG at a one-environment catalog for the demo sandbox: catalog("production"). The
    runbook's kubeconfig carries the runbooks ServiceAccount's token, held to the shipped RBAC."""
    token = runbooks_token(demo_sandbox)

    def use(environment: str = "staging", **overrides) -> None:
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(demo_sandbox, tmp_path, environment, token=token,
                                                                 **overrides)))
    use("staging")
    return use


@pytest.fixture
def estate(demo_sandbox, catalog):
    """The demo estate with a crash-looping release of payments-api on top of a healthy one (staging, auto)."""
    wait_healthy(demo_sandbox)
    release(demo_sandbox, BAD)
    return demo_sandbox


def image_of(sandbox) -> str:
    return sandbox.get("Deployment", "payments-api", "payments")["spec"]["template"]["spec"]["containers"][0]["image"]


def revision_of(sandbox) -> str:
    return sandbox.get("Deployment", "payments-api", "payments")["metadata"]["annotations"][
        "deployment.kubernetes.io/revision"]


def released_revision(sandbox, image: str) -> str:
    """Release `image` and return its revision once the controller has numbered it (the revision annotation
    can trail the observed generation by a sync, and a test must never read the previous one)."""
    before = int(revision_of(sandbox))
    release(sandbox, image)
    return str(sandbox.wait_for(lambda: int(revision_of(sandbox)) > before and revision_of(sandbox)))


def deployment_writes(sandbox, since: float) -> list:
    return [r for r in sandbox.requests.writes(since) if "/deployments/" in r.path]


def rollback(**params):
    params = {"service": "payments-api", "environment": "staging", "requested_by": "alice",
              "reason": "crash loop after 1.5.0", **params}
    return emergency_rollback(**params)


def test_rolls_back_to_v1_like_kubectl_rollout_undo_on_a_twin(estate, tmp_path):
    twin = start_sandbox(manifests=(DEMO_MANIFESTS,))
    try:
        wait_healthy(twin)
        release(twin, BAD)
        record = rollback()
        assert record.outcome == "succeeded"
        assert any(line.startswith("PASS rollout complete") for line in record.evidence)
        assert [s.status for s in record.steps] == ["made"] and record.steps[0].no_undo
        binary = kubectl_binary("1.33") or "kubectl"
        Kubectl(binary, twin.write_kubeconfig(tmp_path / "twin")).run("-n", "payments", "rollout", "undo",
                                                                       "deployment/payments-api")
        wait_healthy(twin)
        wait_healthy(estate)
        ours, theirs = (s.get("Deployment", "payments-api", "payments") for s in (estate, twin))
        assert ours["spec"]["template"] == theirs["spec"]["template"]
        assert image_of(estate) == GOOD
        assert revision_of(estate) == revision_of(twin) == "4"
    finally:
        twin.stop()


def test_rolling_back_from_a_ready_release_is_reported_as_succeeded(demo_sandbox, catalog):
    """Item 1: old pods pending termination are not counted as failures (kubectl's rule)."""
    wait_healthy(demo_sandbox)
    release(demo_sandbox, SERVES_500S)
    wait_healthy(demo_sandbox)
    record = rollback(target_revision=2)
    assert record.outcome == "succeeded", record.evidence
    assert image_of(demo_sandbox) == GOOD and any(e.startswith("PASS pods ready") for e in record.evidence)


def test_a_ready_release_that_serves_errors_is_rolled_back_by_default(demo_sandbox, catalog):
    """Item 3: a run by hand rolls back the current revision even when its pods look healthy."""
    wait_healthy(demo_sandbox)
    release(demo_sandbox, SERVES_500S)
    wait_healthy(demo_sandbox)
    record = rollback(reason="500s after deploy")
    assert record.outcome == "succeeded" and image_of(demo_sandbox) == GOOD
    assert "its pods look healthy" in record.plan.summary
    wait_healthy(demo_sandbox)
    since = demo_sandbox.requests.mark()
    again = rollback(reason="500s after deploy")       # the same request right after: nothing changes
    assert again.outcome == "no-op" and "itself the result of a rollback" in again.plan.noop_reason
    assert demo_sandbox.requests.writes(since) == []


def test_single_replica_crash_loop_is_rolled_back_not_judged_healthy(demo_sandbox, catalog):
    """Item 2: replicas 1, the new pod crash loops beside the old Ready one."""
    wait_healthy(demo_sandbox)
    apps = apps_api(demo_sandbox)
    apps.patch_namespaced_deployment("payments-api", "payments", {"spec": {"replicas": 1}})
    wait_healthy(demo_sandbox)
    release(demo_sandbox, BAD)
    record = rollback()
    assert record.outcome == "succeeded" and image_of(demo_sandbox) == GOOD
    assert "0/1 pods Ready" in "\n".join(record.plan.evidence)


def test_alert_started_run_does_not_undo_a_newer_fix(demo_sandbox, catalog):
    """Item 3: a re-delivered alert that began before the current revision rolled out changes nothing."""
    wait_healthy(demo_sandbox)
    began = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    release(demo_sandbox, "ghcr.io/example/payments-api:1.4.3")      # the fix, rolled out after the alert began
    since = demo_sandbox.requests.mark()
    record = rollback(alert=AlertContext(source="alertmanager", name="KubePodCrashLooping", starts_at=began))
    assert record.outcome == "no-op" and "after alert KubePodCrashLooping began firing" in record.plan.noop_reason
    assert record.trigger.kind == "alert" and demo_sandbox.requests.writes(since) == []


def test_dry_run_publishes_the_plan_and_writes_nothing(estate, catalog):
    catalog("production")
    since = estate.requests.mark()
    record = rollback(environment="production", dry_run=True)
    assert record.outcome == "dry-run"
    assert "from revision 3" in record.plan.summary and "to revision 2" in record.plan.summary
    assert estate.requests.writes(since) == []
    assert image_of(estate) == BAD


def _gate(answer, **params):
    """Start a production rollback, wait for its gate, answer it; return (record or error, run id)."""
    return answered_at_gate(lambda: rollback(environment="production", **params), "emergency-rollback", answer)


def test_one_approver_approves_from_a_concurrent_resumer(estate, catalog):
    catalog("production")
    box, _ = _gate(lambda run: answer_gate(run, approver="bob (on-call lead)", decision="approve",
                                           reason="confirmed on the dashboard"))
    record = box["result"]
    assert record.outcome == "succeeded" and image_of(estate) == GOOD
    assert [(a.decision, a.approver) for a in record.approvals] == [("approve", "bob (on-call lead)")]
    assert record.approvals[0].plan_digest == record.plan.digest


def test_rejected_approval_writes_nothing(estate, catalog):
    catalog("production")
    since = estate.requests.mark()
    box, _ = _gate(lambda run: answer_gate(run, approver="bob", decision="reject", reason="not the cause"))
    assert isinstance(box["error"], ApprovalRejected) and not isinstance(box["error"], ApprovalTimedOut)
    assert deployment_writes(estate, since) == [] and image_of(estate) == BAD


@pytest.mark.parametrize("alias", ["Alice ", "alice.", "ALICE", "alice@example.com"])
def test_requester_cannot_approve_their_own_run_by_any_spelling(estate, catalog, alias):
    catalog("production")
    since = estate.requests.mark()

    def answer(run):
        with pytest.raises(ValueError, match="may not approve it"):
            answer_gate(run, approver=alias, decision="approve")
        answer_gate(run, approver="bob", decision="reject", reason="stop the test")
    box, _ = _gate(answer)
    assert isinstance(box["error"], ApprovalRejected)
    assert deployment_writes(estate, since) == [] and image_of(estate) == BAD


def test_timed_out_and_wrong_plan_approvals_write_nothing(estate, catalog):
    catalog("production", approval={"policy": "one", "timeout_seconds": 4})
    since = estate.requests.mark()
    stale = {"decision": "approve", "approver": "bob", "reason": "", "plan_digest": "0123456789ab"}
    box, _ = _gate(lambda run: resume_flow_run(run, run_input=stale, _sync=True))  # as a stale UI form
    assert isinstance(box["error"], ApprovalTimedOut) and "timed out" in str(box["error"])
    assert deployment_writes(estate, since) == [] and image_of(estate) == BAD


def test_runbooks_approve_answers_the_gate(estate, catalog):
    from prefect.settings import PREFECT_API_URL
    catalog("production")

    def answer(run):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        done = subprocess.run([sys.executable, "-m", "runbooks.cli", "approve", run, "--as", "carol",
                               "--reason", "go"], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    box, _ = _gate(answer)
    assert box["result"].outcome == "succeeded"
    assert box["result"].approvals[0].approver == "carol"


def test_two_runs_at_once_never_both_mutate(estate):
    since = estate.requests.mark()
    first, box1 = run_in_thread(rollback)
    second, box2 = run_in_thread(rollback)
    first.join(timeout=180)
    second.join(timeout=180)
    patches = [r for r in deployment_writes(estate, since) if r.method == "PATCH"]
    assert len(patches) == 1
    outcomes = sorted(b["result"].outcome if "result" in b else type(b["error"]).__name__ for b in (box1, box2))
    assert outcomes in (["no-op", "succeeded"], ["GuardRefused", "succeeded"])


def test_freeze_window_refuses_unless_overridden(estate, catalog):
    catalog("frozen")
    since = estate.requests.mark()
    with pytest.raises(GuardRefused, match="Black Friday freeze"):
        rollback(environment="frozen")
    assert estate.requests.writes(since) == []
    record = rollback(environment="frozen", emergency_override="SEV1: payments down, CAB informed")
    assert record.outcome == "succeeded" and record.emergency_override.startswith("SEV1")
    assert any("overridden" in entry.message for entry in record.timeline)


def test_dry_run_inside_a_freeze_window_completes_and_notes_the_freeze(estate, catalog):
    catalog("frozen")
    since = estate.requests.mark()
    record = rollback(environment="frozen", dry_run=True)
    assert record.outcome == "dry-run" and estate.requests.writes(since) == []
    assert any("Black Friday freeze" in e.message and "dry run" in e.message for e in record.timeline)


@pytest.mark.parametrize("params, error, allowed", [
    ({"service": "payment-api"}, TargetNotFound, "allowed: cart, checkout-web, payments-api"),
    ({"environment": "prod"}, TargetNotFound, "allowed: staging"),
    ({"target_revision": 7}, TargetNotFound, "allowed revisions: 1, 2, 3"),
    ({"requested_by": "  "}, PermanentError, "requested_by is empty"),
    ({"environment": ""}, CatalogError, "environment is empty"),
])
def test_bad_input_is_a_clear_error_with_zero_writes(estate, params, error, allowed):
    since = estate.requests.mark()
    with pytest.raises(error, match=allowed):
        rollback(**params)
    assert estate.requests.writes(since) == []


def test_same_end_state_with_20_percent_of_api_calls_failing(estate):
    estate.faults.seed(7)
    for fault in ({"status": 429, "retry_after": 1}, {"status": 500}, {"drop": True}):
        estate.faults.add(verb="*", path="/apis/apps/v1/namespaces/payments/*", probability=0.07, **fault)
    state = emergency_rollback(service="payments-api", environment="staging", requested_by="alice",
                               return_state=True)
    estate.faults.clear()
    record = state.result()
    assert record.outcome == "succeeded"
    wait_healthy(estate)
    assert image_of(estate) == GOOD and revision_of(estate) == "4"
    assert any(r.status in (0, 429, 500) for r in estate.requests.entries())
    APILogHandler().flush()
    with get_client(sync_client=True) as prefect:         # retries are in the run's own log, not only a module's
        logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[state.state_details.flow_run_id])))
    assert any("transient API error" in log.message for log in logs)


def test_no_token_reaches_logs_or_artifacts(tmp_path, monkeypatch, runbooks_token):
    sandbox = start_sandbox(manifests=(DEMO_MANIFESTS,), token="sbx-" + os.urandom(12).hex())    # an admin token too
    try:
        token = runbooks_token(sandbox)
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(sandbox, tmp_path, token=token)))
        wait_healthy(sandbox)
        release(sandbox, BAD)
        state = emergency_rollback(service="payments-api", environment="staging", requested_by="alice",
                                   return_state=True)
        assert state.is_completed()
        run_id = state.state_details.flow_run_id
        APILogHandler().flush()   # run logs are shipped in the background; wait for them
        with get_client(sync_client=True) as prefect:
            logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            artifacts = prefect.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        assert logs and artifacts
        stored = "\n".join(l.message for l in logs) + "\n".join(str(a.data) for a in artifacts)
        assert token not in stored
        from tasks.redaction import redact
        assert redact(f"Bearer {token}") == "Bearer ***"      # the client's token was registered
    finally:
        sandbox.stop()


def test_a_pod_named_by_an_alert_must_belong_to_the_service(estate):
    """kube-prometheus's KubePodCrashLooping names a pod: it is checked through its owners, never trusted."""
    cart_pod = next(p["metadata"]["name"] for p in estate.list("Pod", "checkout")
                    if p["metadata"]["name"].startswith("cart-"))
    since = estate.requests.mark()
    with pytest.raises(PermanentError, match=f"pod checkout/{cart_pod} belongs to deployment cart, not to "
                                             "deployment checkout/checkout-web"):
        rollback(service="checkout-web", pod=cart_pod)
    assert estate.requests.writes(since) == []
    ours = next(p["metadata"]["name"] for p in estate.list("Pod", "payments")
                if not p["metadata"].get("deletionTimestamp"))
    record = rollback(pod=ours)
    assert record.outcome == "succeeded"
    assert any("belongs to deployment payments/payments-api" in e.message for e in record.timeline)


def test_a_rollback_that_does_not_verify_fails_with_next_steps_and_the_recent_events(demo_sandbox, catalog):
    """Restoring a revision that crash-loops too never completes its rollout: the run fails verification,
    says what to do next and shows the Deployment's recent events as evidence."""
    wait_healthy(demo_sandbox)
    also_bad = released_revision(demo_sandbox, BAD)
    released_revision(demo_sandbox, "ghcr.io/example/payments-api:1.5.1-crashloop")
    catalog("staging", verify_timeout_seconds=5)
    state = emergency_rollback(service="payments-api", environment="staging", requested_by="alice",
                               target_revision=int(also_bad), return_state=True)
    assert state.is_failed() and "exceeded its progress deadline" in state.message
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    [report] = [a.data for a in artifacts if a.description == "Run report"]
    assert "FAIL rollout complete" in report
    assert re.search(r"event (Normal|Warning) \w+ (deployment|replicaset|pod)/payments-api", report), report
    assert image_of(demo_sandbox) == BAD


def test_the_shipped_rbac_without_one_grant_fails_the_rollback_with_the_servers_403(demo_sandbox, tmp_path,
                                                                                   monkeypatch):
    """The proof can fail: the same rollback, as the account under the shipped RBAC minus `patch deployments`."""
    token = apply_shipped(demo_sandbox, without(shipped(), ("apps", "deployments", "patch")))
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(demo_sandbox, tmp_path, token=token)))
    wait_healthy(demo_sandbox)
    release(demo_sandbox, BAD)
    with pytest.raises(AccessDenied, match='deployments.apps "payments-api" is forbidden: User '
                                           '"system:serviceaccount:runbooks:runbooks" cannot patch resource '
                                           '"deployments" in API group "apps" in the namespace "payments"'):
        rollback()
    assert image_of(demo_sandbox) == BAD
    assert [describe(d) for d in calls(demo_sandbox) if not d.allowed] == [
        "patch deployments (group 'apps') in payments"]


def test_every_grant_of_the_rollback_clusterrole_is_used_by_these_tests(request):
    """A grant no test of the runbook uses is one it may not need: too wide until a test shows otherwise.
    Last in the module (pytest-xdist's loadfile keeps a module on one worker, in order)."""
    assert_every_grant_used(request)
