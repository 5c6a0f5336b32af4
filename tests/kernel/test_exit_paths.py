"""Every exit path of the kernel publishes a report with the right outcome and sends the right notification,
and undo restores the target: a toy runbook (tests/kernel/toy_runbook.py) on a real sandbox Deployment."""
from __future__ import annotations

import json
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.flow_runs import resume_flow_run

from tasks.errors import (ApprovalRejected, classify, ApprovalTimedOut, GuardRefused, TargetNotFound, TransientError,
                          UndoFailed, VerificationFailed)
from tasks.gate_answer import answer_gate
from tasks.report import slack_webhook_block
from tests.capture import CaptureServer
from tests.runbook_helpers import answered_at_gate, wait_healthy, write_catalog

from .toy_runbook import scale_toy

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def capture():
    server = CaptureServer()
    yield server
    server.stop()


@pytest.fixture
def channels(capture, prefect_harness):
    """Two webhook blocks: one subscribed to `success`, one to `failure` (and the gate's events)."""
    names = {event: f"{event}-{uuid.uuid4().hex[:8]}" for event in ("success", "failure")}
    for event, name in names.items():
        slack_webhook_block(f"{capture.url}/{name}", name=name).save(name)
    return names


@pytest.fixture
def estate(demo_sandbox, tmp_path, monkeypatch, channels):
    wait_healthy(demo_sandbox)
    notifications = [{"kind": "slack", "block": channels["success"], "events": ["success"]},
                     {"kind": "slack", "block": channels["failure"], "events": ["failure", "gate", "escalation"]}]

    def use(environment: str = "staging", **overrides) -> None:
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(demo_sandbox, tmp_path, environment,
                                                                 notifications=notifications, **overrides)))
    use()
    demo_sandbox.use = use
    return demo_sandbox


def replicas(sandbox) -> int:
    return sandbox.get("Deployment", "payments-api", "payments")["spec"]["replicas"]


def toy(**params):
    """Run the toy runbook; return (record or exception, flow run id)."""
    params = {"environment": "staging", "service": "payments-api", "requested_by": "alice", "replicas": 5, **params}
    state = scale_toy(**params, return_state=True)
    result = state.result(raise_on_failure=False)
    return result, state.state_details.flow_run_id


def report_of(run_id) -> tuple[str, str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    [report] = [a for a in artifacts if a.key and a.key.startswith("runbook-report-")]
    return report.metadata_["outcome"], report.data


def notified(capture, channels, outcome: str) -> str:
    """Which channel (success or failure) was told `toy-scale on ...: <outcome>`."""
    for event, name in channels.items():
        for body in capture.bodies(f"/{name}"):
            if f": {outcome}" in json.loads(body)["text"] and "toy-scale on" in json.loads(body)["text"]:
                return event
    raise AssertionError(f"no notification of {outcome}; got {capture.requests}")


def test_success(estate, capture, channels):
    record, run_id = toy()
    assert record.outcome == "succeeded" and replicas(estate) == 5
    assert report_of(run_id)[0] == "succeeded" and notified(capture, channels, "succeeded") == "success"
    assert [s.status for s in record.steps] == ["made"] and record.steps[0].undo == "scale back to 3"


def test_no_op(estate, capture, channels):
    record, run_id = toy(replicas=3)
    assert record.outcome == "no-op" and report_of(run_id)[0] == "no-op"
    assert notified(capture, channels, "no-op") == "success"


def test_dry_run_makes_zero_writes(estate, capture, channels):
    since = estate.requests.mark()
    record, run_id = toy(dry_run=True)
    assert record.outcome == "dry-run" and estate.requests.writes(since) == [] and replicas(estate) == 3
    assert report_of(run_id)[0] == "dry-run" and notified(capture, channels, "dry-run") == "success"


def test_refused_by_a_guard(estate, capture, channels):
    estate.use("frozen")
    error, run_id = toy(environment="frozen")
    assert isinstance(error, GuardRefused) and replicas(estate) == 3
    outcome, markdown = report_of(run_id)
    assert outcome == "refused" and "Nothing was changed." in markdown
    assert notified(capture, channels, "refused") == "failure"


def test_bad_input_is_reported_and_notified(estate, capture, channels):
    error, run_id = toy(service="no-such-service")
    assert isinstance(error, TargetNotFound)
    assert report_of(run_id)[0] == "failed" and notified(capture, channels, "failed") == "failure"


def _at_gate(answer, **params):
    box, _ = answered_at_gate(lambda: toy(environment="production", **params), "toy-scale", answer)
    return box["result"]


def test_rejected_at_the_gate(estate, capture, channels):
    estate.use("production")
    error, run_id = _at_gate(lambda run: answer_gate(run, approver="bob", decision="reject", reason="no"))
    assert isinstance(error, ApprovalRejected) and replicas(estate) == 3
    assert report_of(run_id)[0] == "rejected" and notified(capture, channels, "rejected") == "failure"
    assert [kind for kind in capture.bodies(f"/{channels['failure']}") if b"waits for approval" in kind]


def test_timed_out_at_the_gate(estate, capture, channels):
    estate.use("production", approval={"policy": "one", "timeout_seconds": 3})
    stale = {"decision": "approve", "approver": "bob", "reason": "", "plan_digest": "0123456789ab"}
    error, run_id = _at_gate(lambda run: resume_flow_run(run, run_input=stale, _sync=True))
    assert isinstance(error, ApprovalTimedOut) and replicas(estate) == 3
    assert report_of(run_id)[0] == "timed-out" and notified(capture, channels, "timed-out") == "failure"


def test_failed_verification_undoes_the_change_and_proves_it(estate, capture, channels):
    error, run_id = toy(fail_verification=True)
    assert isinstance(error, VerificationFailed) and replicas(estate) == 3
    outcome, markdown = report_of(run_id)
    assert outcome == "rolled-back" and "after undo: PASS replicas: 3 replicas (wanted 3)" in markdown
    assert "| undone |" in markdown and notified(capture, channels, "rolled-back") == "failure"


def test_a_failed_undo_is_never_swallowed(estate, capture, channels):
    error, run_id = toy(fail_verification=True, fail_undo=True)
    assert isinstance(error, UndoFailed) and isinstance(error.__cause__, VerificationFailed)
    assert replicas(estate) == 5                       # the change is still in place, and the report says so
    outcome, markdown = report_of(run_id)
    assert outcome == "undo-failed" and "UNDO FAILED: deployment payments/payments-api" in markdown
    assert "Restore it by hand" in markdown and notified(capture, channels, "undo-failed") == "failure"


@pytest.mark.parametrize("kind, error_type", [("bug", ZeroDivisionError), ("sdk", TargetNotFound),
                                              ("prefect", TargetNotFound), ("runbook", TransientError)])
def test_an_unexpected_error_after_a_change_is_undone_reported_and_notified(estate, capture, channels, kind,
                                                                             error_type):
    error, run_id = toy(raise_after_change=kind)
    assert isinstance(classify(error), error_type), error        # raised as the SDK raised it, mapped in one place
    assert replicas(estate) == 3
    assert report_of(run_id)[0] == "rolled-back" and notified(capture, channels, "rolled-back") == "failure"


def test_a_drill_step_is_always_undone_even_when_the_run_succeeds(estate, capture, channels):
    record, run_id = toy(drill=True)
    assert record.outcome == "succeeded" and replicas(estate) == 3
    assert [s.status for s in record.steps] == ["undone"]
    assert "after undo: PASS replicas: 3 replicas (wanted 3)" in report_of(run_id)[1]


def test_every_step_is_journaled_before_and_after_its_write(estate):
    from plans.targets import change_record_key
    from prefect.client.schemas.filters import ArtifactFilterKey
    record, run_id = toy(fail_verification=True)
    with get_client(sync_client=True) as client:
        entries = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(like_="runbook-change-%")))
    key = {a.key for a in entries}
    assert sorted(a.metadata_["status"] for a in entries) == ["intended", "made", "undone"]
    from tasks.catalog import load_catalog
    assert key == {change_record_key(load_catalog().deployment_target("staging", "payments-api").key)}
