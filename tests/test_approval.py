"""The approval gate under a real Prefect server: a test flow pauses, a concurrent resumer answers like a person."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from prefect import flow, get_client, pause_flow_run, task
from prefect.flow_runs import resume_flow_run
from prefect.input import read_flow_run_input
from prefect.runtime import flow_run as current_run

from plans.plan import Change, Plan
from plans.record import Approval
from plans.targets import DeploymentTarget
from tasks.approval import request_approval
from tasks.catalog import ApprovalPolicy
from tasks.errors import ApprovalRejected, ApprovalTimedOut
from tasks.gate_answer import answer_gate

ROOT = Path(__file__).resolve().parent.parent
PLAN = Plan(runbook="emergency-rollback", target=DeploymentTarget(environment="staging", cluster="https://k8s",
                                                                  service="payments", namespace="payments",
                                                                  deployment="payments-api"),
            summary="Roll payments-api back to revision 3",
            changes=[Change(resource="deployment payments/payments-api", field="spec.template (image)",
                            before="payments:v4", after="payments:v3")])
EVENTS: list[tuple[str, str]] = []
RUN_IDS: "queue.Queue[uuid.UUID]" = queue.Queue()

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _on_event(kind: str, message: str) -> None:
    EVENTS.append((kind, message))
    if kind == "gate":
        RUN_IDS.put(uuid.UUID(current_run.id))


@flow(name="approval-gate-test", persist_result=False)
def gated(policy: ApprovalPolicy, requested_by: str) -> list[Approval]:
    return request_approval(PLAN, policy=policy, requested_by=requested_by, on_event=_on_event)


@task(persist_result=False)
def record_outcome(message: str) -> str:
    return f"recorded: {message}"


@flow(name="approval-gate-then-report", persist_result=False)
def gated_then_report(policy: ApprovalPolicy, requested_by: str) -> str:
    """Like a runbook: a refused gate is still reported, by a task that needs the run to be Running."""
    try:
        request_approval(PLAN, policy=policy, requested_by=requested_by, on_event=_on_event)
    except ApprovalRejected as exc:
        return record_outcome(str(exc))
    return "approved"


@flow(name="plain-pause-test", persist_result=False)
def plain_pause() -> None:
    RUN_IDS.put(uuid.UUID(current_run.id))
    pause_flow_run(timeout=30, poll_interval=1, key="plain")


def answer(name: str, decision: str = "approve", digest: str = PLAN.digest, reason: str = "") -> dict:
    return {"decision": decision, "approver": name, "reason": reason, "plan_digest": digest}


def wait_for_gate(run_id: uuid.UUID, answered: set[str], timeout: float = 30) -> str:
    """Block until the run waits on a fresh, open pause whose form is published; return its key."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            details = state.state_details if state else None
            if (state and state.is_paused() and details.pause_key not in answered
                    and details.pause_timeout > dt.datetime.now(dt.timezone.utc)
                    and (not details.run_input_keyset
                         or read_flow_run_input(details.run_input_keyset["schema"], flow_run_id=run_id))):
                return details.pause_key
            time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not pause for an answer within {timeout} s")


@contextlib.contextmanager
def resumer(*steps: dict | str | Callable[[uuid.UUID], None]) -> Iterator[dict]:
    """Answer the next gate from a thread: a dict is sent as the form answer, a callable gets the run id
    once the gate is open, and "escalation" waits until the gate has escalated."""
    seen: dict = {}

    def run() -> None:
        try:
            run_id = seen["run_id"] = RUN_IDS.get(timeout=30)
            answered: set[str] = set()
            for step in steps:
                if step == "escalation":
                    while not any(kind == "escalation" for kind, _ in EVENTS):
                        time.sleep(0.1)
                    continue
                answered.add(wait_for_gate(run_id, answered))
                step(run_id) if callable(step) else resume_flow_run(run_id, run_input=step)
        except BaseException as exc:       # re-raised in the test's thread below
            seen["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield seen
    thread.join(timeout=60)
    assert not thread.is_alive(), "resumer still waiting"
    if "error" in seen:
        raise seen["error"]


@pytest.fixture(autouse=True)
def fresh_events() -> Iterator[None]:
    EVENTS.clear()
    while not RUN_IDS.empty():
        RUN_IDS.get_nowait()
    yield


@pytest.fixture
def run_log() -> Iterator[list[str]]:
    """Messages the gate wrote to the run log (the Prefect run logger does not propagate to caplog)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


ONE = ApprovalPolicy(policy="one", timeout_seconds=30)


def test_one_approver_approves_and_the_approval_names_them_and_the_plan():
    with resumer(answer("  erin ", reason="looks right")):
        approvals = gated(ONE, "dana")
    assert [(a.decision, a.approver, a.reason, a.plan_digest) for a in approvals] == [
        ("approve", "erin", "looks right", PLAN.digest)]
    assert [kind for kind, _ in EVENTS] == ["gate"]
    assert PLAN.digest in EVENTS[0][1] and "runbooks approve" in EVENTS[0][1]


def test_the_gate_shows_the_plan_and_prefills_its_digest():
    seen: dict = {}

    def inspect_then_approve(run_id: uuid.UUID) -> None:
        with get_client(sync_client=True) as client:
            keyset = client.read_flow_run(run_id).state.state_details.run_input_keyset
        seen.update(schema=read_flow_run_input(keyset["schema"], flow_run_id=run_id),
                    description=read_flow_run_input(keyset["description"], flow_run_id=run_id))
        resume_flow_run(run_id, run_input=answer("erin"))

    with resumer(inspect_then_approve):
        gated(ONE, "dana")
    assert seen["schema"]["properties"]["plan_digest"]["default"] == PLAN.digest
    assert seen["schema"]["properties"]["approver"]["description"]
    assert PLAN.markdown() in seen["description"] and "dana" in seen["description"]


def test_a_reject_from_anyone_stops_the_run_with_the_reason():
    with resumer(answer("dana", "reject", reason="wrong revision")), pytest.raises(ApprovalRejected) as err:
        gated(ONE, "dana")
    assert str(err.value) == "rejected by dana: wrong revision"


def test_the_requester_cannot_approve_and_the_gate_keeps_waiting_for_another_approver(run_log):
    with resumer(answer(" Dana "), answer("erin")):
        approvals = gated(ONE, "dana")
    assert [a.approver for a in approvals] == ["erin"]
    assert "Dana requested this run and may not approve it; another approver is needed" in run_log


def test_an_answer_for_another_plan_does_not_count(run_log):
    with resumer(answer("erin", digest="0123456789ab"), answer("frank")):
        approvals = gated(ONE, "dana")
    assert [(a.approver, a.plan_digest) for a in approvals] == [("frank", PLAN.digest)]
    assert any("0123456789ab" in line and PLAN.digest in line and "does not count" in line for line in run_log)


def test_two_needs_two_distinct_approvers_neither_the_requester(run_log):
    two = ApprovalPolicy(policy="two", timeout_seconds=30)
    with resumer(answer("erin"), answer("dana"), answer(" ERIN "), answer("frank")):
        approvals = gated(two, "dana")
    assert [a.approver for a in approvals] == ["erin", "frank"]
    assert any("ERIN has already approved" in line for line in run_log)


@pytest.mark.parametrize("alias", ["dana.", "DANA", "dana@example.com", " d.ana "])
def test_the_requester_cannot_approve_under_another_spelling_of_their_name(run_log, alias):
    with resumer(answer(alias), answer("erin")):
        approvals = gated(ONE, "dana")
    assert [a.approver for a in approvals] == ["erin"]
    assert any("requested this run and may not approve it" in line for line in run_log)


def test_a_second_approval_by_the_same_person_is_refused_before_it_is_sent():
    two = ApprovalPolicy(policy="two", timeout_seconds=30)
    outcome: dict = {}

    def approve_twice(run_id: uuid.UUID) -> None:
        answer_gate(run_id, approver="erin", decision="approve")
        for _ in range(100):                            # the gate re-opens with erin counted
            try:
                answer_gate(run_id, approver="Erin.", decision="approve")
            except ValueError as exc:
                if "has already approved" in str(exc):
                    outcome["refused"] = str(exc)
                    break
            time.sleep(0.2)
        answer_gate(run_id, approver="frank", decision="approve")

    with resumer(approve_twice):
        approvals = gated(two, "dana")
    assert "nothing was sent" in outcome["refused"]
    assert [a.approver for a in approvals] == ["erin", "frank"]


def test_an_unanswered_gate_times_out_and_the_flow_can_still_report():
    policy = ApprovalPolicy(policy="one", timeout_seconds=3)
    state = gated_then_report(policy, "dana", return_state=True)
    assert state.result() == "recorded: approval timed out after 3 s; nothing was changed"
    with get_client(sync_client=True) as client:       # the server agrees: not failed as "never resumed"
        assert client.read_flow_run(state.state_details.flow_run_id).state.is_completed()


def test_escalation_fires_once_then_an_approval_still_counts():
    policy = ApprovalPolicy(policy="one", timeout_seconds=30, escalate_after_seconds=2)
    with resumer("escalation", answer("erin")):
        approvals = gated(policy, "dana")
    assert [a.approver for a in approvals] == ["erin"]
    assert [kind for kind, _ in EVENTS] == ["gate", "escalation"]
    assert "waited 2 s without a decision" in EVENTS[1][1]


def test_auto_policy_returns_at_once_without_pausing():
    state = gated(ApprovalPolicy(policy="auto"), "dana", return_state=True)
    approvals = state.result()
    assert [(a.decision, a.approver, a.plan_digest) for a in approvals] == [("auto", "policy:auto", PLAN.digest)]
    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(state.state_details.flow_run_id)
    assert not [s for s in history if s.is_paused()] and EVENTS == []
    with pytest.raises(ValueError, match="is not waiting at a gate"):
        answer_gate(state.state_details.flow_run_id, approver="erin", decision="approve")


def test_answer_gate_errors_name_the_problem():
    with pytest.raises(ValueError, match="no flow run"):
        answer_gate(uuid.uuid4(), approver="erin", decision="approve")
    with pytest.raises(ValueError, match="not a flow run id"):
        answer_gate("nope", approver="erin", decision="approve")

    def answer_plain_pause(run_id: uuid.UUID) -> None:
        with pytest.raises(ValueError, match="not waiting for input"):
            answer_gate(run_id, approver="erin", decision="approve")
        resume_flow_run(run_id)

    with resumer(answer_plain_pause):
        plain_pause()


def runbooks_approve(run_id: uuid.UUID, *args: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.run([sys.executable, "-m", "runbooks.cli", "approve", str(run_id), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_runbooks_approve_refuses_the_requester_then_approves_for_another_person():
    results: dict = {}

    def use_the_cli(run_id: uuid.UUID) -> None:
        with get_client(sync_client=True) as client:
            key_before = client.read_flow_run(run_id).state.state_details.pause_key
            results["refused"] = runbooks_approve(run_id, "--as", " DANA")
            after = client.read_flow_run(run_id).state
            results["still_paused"] = after.is_paused() and after.state_details.pause_key == key_before
        with pytest.raises(ValueError, match=f"waits for approval of plan {PLAN.digest}, not 0123456789ab"):
            answer_gate(run_id, approver="erin", decision="approve", plan_digest="0123456789ab")
        results["approved"] = runbooks_approve(run_id, "--as", "erin", "--reason", "checked", "--plan", PLAN.digest)

    with resumer(use_the_cli) as seen:
        approvals = gated(ONE, "dana")
    refused, approved = results["refused"], results["approved"]
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"runbooks approve: DANA requested run {seen['run_id']} and may not approve it; another approver is "
        f"needed (nothing was sent)"]
    assert results["still_paused"]
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"approved plan {PLAN.digest} of run {seen['run_id']} as erin"
    assert [(a.approver, a.reason, a.plan_digest) for a in approvals] == [("erin", "checked", PLAN.digest)]


def test_runbooks_pending_lists_the_gate_with_its_plan_and_the_command_that_answers_it(capsys):
    from runbooks.cli import main
    seen: dict = {}

    def list_then_approve(run_id: uuid.UUID) -> None:
        seen["code"] = main(["pending"])
        seen["out"] = capsys.readouterr().out
        resume_flow_run(run_id, run_input=answer("erin"))

    with resumer(list_then_approve) as info:
        gated(ONE, "dana")
    assert seen["code"] == 0
    line = next(l for l in seen["out"].splitlines() if str(info["run_id"]) in l and "plan" in l)
    assert "approval-gate-test" in line and f"plan {PLAN.digest}" in line and "requested by dana" in line
    assert f"runbooks approve {info['run_id']} --as YOUR_NAME" in seen["out"]


def test_runbooks_approve_reject_stops_the_run():
    results: list[subprocess.CompletedProcess] = []
    reject = lambda run_id: results.append(runbooks_approve(run_id, "--as", "erin", "--reject", "--reason", "not now"))
    with resumer(reject), pytest.raises(ApprovalRejected, match="rejected by erin: not now") as err:
        gated(ONE, "dana")
    assert not isinstance(err.value, ApprovalTimedOut)
    assert results[0].returncode == 0 and results[0].stdout.startswith(f"rejected plan {PLAN.digest} of run ")
