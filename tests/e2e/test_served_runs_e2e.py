"""Served runs under both engines (the warm runner and Prefect's own `serve()`), on the real `runbooks up` stack:
a run cancelled mid-change is undone; a run whose process is killed at its gate or mid-change ends Crashed
with a report rebuilt from its journal (and `approve` refuses it); a lock survives a Prefect server restart
and is freed when its holder is gone; `up` restarts a dead server instead of stopping everything."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .stack import ROOT, Stack, start_stack, stop_stack, wait_for

pytestmark = pytest.mark.e2e
SERVED = Path(__file__).parent / "prefect-served.yaml"
STAGING = {"environment": "staging", "service": "payments-api", "requested_by": "pytest"}


@pytest.fixture(scope="module", params=["warm", "prefect"])
def stack(request, tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp(f"served-{request.param}"),
                        extra_env={"RUNBOOKS_PREFECT_YAML": str(SERVED), "RUNBOOKS_SERVE_ENGINE": request.param,
                                   "RUNBOOKS_SERVE_LIMIT": "1"})
    stack.engine = request.param
    yield stack
    assert stop_stack(stack) == 0, stack.log("serve")[-3000:]


def api(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:
    """One API call; retried on 503 as Prefect's own client does (SQLite answers "database is locked")."""
    for attempt in range(10):
        response = httpx.request(method, f"{stack.api_url}{path}", timeout=15, **kwargs)
        if response.status_code != 503:
            break
        time.sleep(1)
    response.raise_for_status()
    return response


def start_toy(stack: Stack, **parameters) -> str:
    deployment = api(stack, "GET", "/deployments/name/toy-scale/toy-scale").json()
    created = api(stack, "POST", f"/deployments/{deployment['id']}/create_flow_run",
                  json={"parameters": {**STAGING, "replicas": 5, **parameters}})
    return created.json()["id"]


def state_of(stack: Stack, run_id: str) -> dict:
    return api(stack, "GET", f"/flow_runs/{run_id}").json()["state"] or {}


def journal(stack: Stack, run_id: str) -> list[str]:
    artifacts = api(stack, "POST", "/artifacts/filter", json={"artifacts": {
        "flow_run_id": {"any_": [run_id]}, "key": {"like_": "runbook-change-%"}}}).json()
    return [a["metadata_"]["status"] for a in sorted(artifacts, key=lambda a: a["created"])]


def report(stack: Stack, run_id: str) -> dict | None:
    artifacts = api(stack, "POST", "/artifacts/filter", json={"artifacts": {
        "flow_run_id": {"any_": [run_id]}, "key": {"like_": "runbook-report-%"}}}).json()
    return artifacts[0] if artifacts else None


def run_pid(stack: Stack, run_id: str) -> int:
    def find():
        logs = api(stack, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}).json()
        found = next((re.search(r"process (\d+)\)", log["message"]) for log in logs
                      if "started for" in log["message"]), None)
        return int(found.group(1)) if found else None
    return wait_for(find, 60, "the run's process id in its log")


def replicas(stack: Stack) -> int:
    deployment = httpx.get(f"{stack.env()['SANDBOX_URL']}/apis/apps/v1/namespaces/payments-staging/deployments/"
                           "payments-api", timeout=10).json()
    return deployment["spec"]["replicas"]


def cancel_mid_change(stack: Stack, run_id: str, *, replicas_during: int) -> str:
    """Cancel the run once its change is made; check it is undone (3 replicas again); return its report."""
    wait_for(lambda: "made" in journal(stack, run_id), 60, "the change to be made")
    assert replicas(stack) == replicas_during
    api(stack, "POST", f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True})
    wait_for(lambda: state_of(stack, run_id).get("type") == "CANCELLED", 60, "the run to end Cancelled")
    assert replicas(stack) == 3
    assert journal(stack, run_id) == ["intended", "made", "undone"]
    found = wait_for(lambda: report(stack, run_id), 30, "the run's report")
    assert found["metadata_"]["outcome"] == "cancelled"
    return found["data"]


def test_a_run_cancelled_mid_change_is_undone(stack):
    report_text = cancel_mid_change(stack, start_toy(stack, hold_seconds=60), replicas_during=5)
    assert "every change it made was undone" in report_text


def test_a_run_waiting_at_its_gate_does_not_use_up_the_runner(stack):
    """The runner's limit is 1 here: a run paused at its gate must not stop another runbook from running."""
    if stack.engine != "warm":
        pytest.skip("Prefect's serve() counts paused runs against its limit (documented)")
    gated = start_toy(stack, environment="production")
    wait_for(lambda: state_of(stack, gated).get("type") == "PAUSED", 60, "the first run's gate")
    other = start_toy(stack, replicas=3)                    # a no-op, but it must run to know that
    wait_for(lambda: state_of(stack, other).get("type") == "COMPLETED", 60, "the second run to complete")
    api(stack, "POST", f"/flow_runs/{gated}/set_state", json={"state": {"type": "CANCELLING"}, "force": True})
    wait_for(lambda: state_of(stack, gated).get("type") == "CANCELLED", 60, "the gated run to end")


def test_a_run_killed_at_its_gate_ends_crashed_and_cannot_be_approved(stack):
    run_id = start_toy(stack, environment="production")
    wait_for(lambda: state_of(stack, run_id).get("type") == "PAUSED", 60, "the gate")
    os.kill(run_pid(stack, run_id), signal.SIGKILL)
    wait_for(lambda: state_of(stack, run_id).get("type") == "CRASHED", 60, "the run to end Crashed")
    approve = subprocess.run([sys.executable, "-m", "runbooks.cli", "approve", run_id, "--as", "bob"], cwd=ROOT,
                             env=stack.env(), capture_output=True, text=True, timeout=60)
    assert approve.returncode == 2 and "not waiting at a gate (it is Crashed" in approve.stderr
    found = wait_for(lambda: report(stack, run_id), 30, "the lost run's report")
    assert found["metadata_"]["outcome"] == "crashed" and "Nothing was changed" in found["data"]


def test_runs_whose_runner_died_too_are_caught_by_heartbeats(stack):
    """The runner catches a dead run at once; heartbeats and this automation catch the rest."""
    from deployments.zombies import NAME
    automations = api(stack, "POST", "/automations/filter", json={"limit": 50}).json()
    [zombies] = [a for a in automations if a["name"] == NAME]
    assert zombies["enabled"] and zombies["trigger"]["posture"] == "Proactive"
    assert zombies["trigger"]["within"] == 90.0 and zombies["actions"][0]["state"] == "CRASHED"


def test_a_run_killed_mid_change_leaves_a_report_and_a_cooldown(stack):
    run_id = start_toy(stack, hold_seconds=60, replicas=4)
    wait_for(lambda: "made" in journal(stack, run_id), 60, "the change to be made")
    os.kill(run_pid(stack, run_id), signal.SIGKILL)
    wait_for(lambda: state_of(stack, run_id).get("type") == "CRASHED", 60, "the run to end Crashed")
    found = wait_for(lambda: report(stack, run_id), 30, "the lost run's report")
    assert found["metadata_"]["outcome"] == "crashed"
    assert "may be in place" in found["data"] and "spec.replicas: 3 -> 4 (made)" in found["data"]
    # put it back for the next tests, as the report asks an operator to
    httpx.patch(f"{stack.env()['SANDBOX_URL']}/apis/apps/v1/namespaces/payments-staging/deployments/payments-api",
                json={"spec": {"replicas": 3}}, headers={"Content-Type": "application/merge-patch+json"}, timeout=10)


def _prefect_server_pid(stack: Stack) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "prefect server start" in cmdline and f"--port {stack.prefect_port}" in cmdline:
                return int(entry.name)
    raise AssertionError("no prefect server process")


def test_a_lock_survives_a_server_restart_and_is_freed_when_its_holder_is_gone(stack):
    if stack.engine != "warm":
        pytest.skip("the server restart is the same under both engines; once is enough")
    holder = start_toy(stack, environment="production")
    wait_for(lambda: state_of(stack, holder).get("type") == "PAUSED", 60, "the holder at its gate")
    pid = run_pid(stack, holder)
    os.kill(_prefect_server_pid(stack), signal.SIGKILL)      # the server crashes ...
    os.kill(pid, signal.SIGKILL)                             # ... and the lock's holder dies meanwhile
    wait_for(lambda: _healthy(stack), 120, "`runbooks up` to restart the Prefect server")
    assert "prefect-server exited" in (stack.directory / "up.log").read_text()
    wait_for(lambda: state_of(stack, holder).get("type") == "CRASHED", 60, "the holder to end Crashed")
    second = start_toy(stack, environment="production")
    wait_for(lambda: state_of(stack, second).get("type") == "PAUSED", 90,
             "a new run to take the freed lock and reach its gate")
    api(stack, "POST", f"/flow_runs/{second}/set_state", json={"state": {"type": "CANCELLING"}, "force": True})
    wait_for(lambda: state_of(stack, second).get("type") == "CANCELLED", 60, "the second run to end")


def _healthy(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_chaos_drill_cancelled_mid_fault_still_restores(stack):
    """The served chaos-drill run is cancelled while its fault is in place: the restore (the kernel's undo,
    always run) scales the service back, and the run ends Cancelled."""
    if stack.engine != "warm":
        pytest.skip("cancellation is the kernel's, the same under both engines (test_a_run_cancelled_mid_change...)")
    deployment = api(stack, "GET", "/deployments/name/chaos-drill/chaos-drill").json()
    experiment = {"title": "one replica fewer", "service": "payments-api", "duration_seconds": 120,
                  "fault": {"kind": "scale-down", "replicas": 2},
                  "hypothesis": [{"kind": "ready-replicas", "at_least": 1}]}
    run_id = api(stack, "POST", f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": {
        "environment": "staging", "requested_by": "pytest", "experiment": experiment}}).json()["id"]
    assert "after undo: PASS service recovered" in cancel_mid_change(stack, run_id, replicas_during=2)
