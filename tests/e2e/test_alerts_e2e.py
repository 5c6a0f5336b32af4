"""An alert posted to a real Prometheus Alertmanager starts the mapped runbook on the real stack.

`runbooks up` (Prefect server, served runbooks, receiver, sandbox) runs as a subprocess; Debian's
`prometheus-alertmanager` delivers webhooks with a bearer token to the receiver. The alert is
kube-prometheus's KubePodCrashLooping for a pod of the bad release (namespace, pod, container, cluster),
firing since after that release, as a real one would. The run receives a typed AlertContext and the pod,
pauses at the production gate, is approved with `runbooks approve`, and completes. A resolved alert, a
duplicate and another alert on the object just changed (cooldown from its change records) start nothing.
The stack runs on PostgreSQL (`runbooks up --database`, the session's real PostgreSQL): the Prefect server's
state and the receiver's are there. One stack, not one per database, to keep the suite's time: the served
runs, shutdown and UI end-to-end tests run `make run`'s SQLite stack, and the receiver's own tests run
against Prefect on SQLite in process; to run this module on SQLite too, add "sqlite" to the fixture's params.
`runbooks demo-alert` does the same from the command line and prints the command that approves its run.
"""
from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client, config

from runbooks.demo_cmd import alertmanager_fingerprint, crash_looping_payload, current_pod

from .stack import ROOT, Stack, free_port, gated_rollback_run, start_stack, stop_stack, wait_for

pytestmark = pytest.mark.e2e
ALERTMANAGER = shutil.which("prometheus-alertmanager")
BAD = "ghcr.io/example/payments-api:1.5.0-crashloop"


@pytest.fixture(scope="module", params=["postgresql"])
def stack(request, tmp_path_factory):
    database = None
    if request.param == "postgresql":
        database = request.getfixturevalue("postgres").create_database(f"stack_{free_port()}")
    stack = start_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), database=database)
    stack.database = database
    yield stack
    assert stop_stack(stack) == 0, stack.log("serve")[-3000:]


@pytest.fixture(scope="module")
def alertmanager(stack: Stack, tmp_path_factory):
    if not ALERTMANAGER:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    directory = tmp_path_factory.mktemp("alertmanager")
    (directory / "token").write_text(stack.receiver_token)
    cfg = {"route": {"receiver": "runbooks", "group_by": ["alertname", "cluster", "namespace"],
                     "group_wait": "0s", "group_interval": "1s", "repeat_interval": "4h"},
           "receivers": [{"name": "runbooks", "webhook_configs": [{
               "url": f"{stack.receiver_url}/alerts/alertmanager", "send_resolved": True,
               "http_config": {"authorization": {"type": "Bearer",
                                                 "credentials_file": str(directory / "token")}}}]}]}
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = open(directory / "alertmanager.log", "wb")
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={directory / 'alertmanager.yml'}",
                                f"--storage.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (directory / "alertmanager.log").read_text()
        time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=20)


def post_alert(alertmanager: str, alert: dict, *, resolved: bool = False) -> None:
    """Fire (or resolve) an alert in Alertmanager as Prometheus does, from a webhook-shaped alert."""
    sent = {"labels": alert["labels"], "annotations": alert["annotations"], "startsAt": alert["startsAt"]}
    if resolved:
        sent["endsAt"] = dt.datetime.now(dt.timezone.utc).isoformat()
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=[sent], timeout=10)
    assert response.status_code == 200, response.text


def rollback_runs(stack: Stack) -> list[dict]:
    """Runs of emergency-rollback other than those Prefect's scheduler made from the monthly schedules."""
    deployment = httpx.get(f"{stack.api_url}/deployments/name/emergency-rollback/emergency-rollback").json()
    body = {"deployments": {"id": {"any_": [deployment["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"}
    runs = httpx.post(f"{stack.api_url}/flow_runs/filter", json=body, timeout=10).json()
    return [r for r in runs if "auto-scheduled" not in r["tags"]]


def finished(stack: Stack, run_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: next((r for r in rollback_runs(stack) if r["id"] == run_id
                                  and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")), None), timeout,
                    "the run to finish")


def to_receiver(stack: Stack, payload: dict) -> dict:
    response = httpx.post(f"{stack.receiver_url}/alerts/alertmanager", json=payload,
                          headers={"Authorization": f"Bearer {stack.receiver_token}"}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["outcomes"][0]


def test_alertmanager_alert_starts_rollback_then_resolved_duplicate_and_cooldown_start_nothing(stack, alertmanager):
    api = config.new_client_from_config(config_file=stack.env()["KUBECONFIG"])
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.patch_namespaced_deployment("payments-api", "payments", {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": BAD}]}}}})
    pod, uid, released = current_pod(apps, core, "payments", "payments-api", image=BAD)
    starts_at = max(dt.datetime.now(dt.timezone.utc), released)       # fires after the bad release
    firing = crash_looping_payload("payments", pod, "api", starts_at=starts_at, uid=uid)["alerts"][0]
    assert rollback_runs(stack) == []
    post_alert(alertmanager, firing)

    paused = wait_for(lambda: [r for r in rollback_runs(stack) if r["state_type"] == "PAUSED"], 90,
                      "the alert's run to pause at the production gate")
    run = paused[0]
    parameters = run["parameters"]
    assert (parameters["service"], parameters["environment"], parameters["requested_by"], parameters["pod"]) == (
        "payments-api", "production", "alert:alertmanager", pod)
    alert = parameters["alert"]
    assert isinstance(alert, dict) and alert["name"] == "KubePodCrashLooping" and alert["labels"]["pod"] == pod
    assert dt.datetime.fromisoformat(alert["starts_at"].replace("Z", "+00:00")) == starts_at
    assert alert["fingerprint"] == alertmanager_fingerprint(firing["labels"])   # Alertmanager's own fingerprint

    approve = subprocess.run([sys.executable, "-m", "runbooks.cli", "approve", run["id"], "--as", "oncall-lead",
                              "--reason", "alert confirmed"], env=stack.env(), capture_output=True, text=True,
                             timeout=120)
    assert approve.returncode == 0, approve.stderr
    assert finished(stack, run["id"])["state_type"] == "COMPLETED", stack.log("serve")[-4000:]
    image = apps.read_namespaced_deployment("payments-api", "payments").spec.template.spec.containers[0].image
    assert image == "ghcr.io/example/payments-api:1.4.2"
    artifacts = httpx.post(f"{stack.api_url}/artifacts/filter",
                           json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    report = "\n".join(a.get("data") or "" for a in artifacts)
    assert "KubePodCrashLooping" in report and "firing since" in report, "the report names the typed alert"

    # The same alert again (Alertmanager keeps it grouped: no new notification), then resolved: neither
    # starts a run. Sent straight to the receiver: the same alert is a duplicate, and another pod's alert on
    # payments-api is held by the cooldown the completed run's change record started.
    post_alert(alertmanager, firing)
    post_alert(alertmanager, firing, resolved=True)
    wait_for(lambda: "resolved" in stack.log("receiver"), 30, "Alertmanager to deliver the resolved alert")
    again = to_receiver(stack, crash_looping_payload("payments", pod, "api", starts_at=starts_at, uid=uid))
    assert again["outcome"] == "duplicate", again
    other_pod = re.sub(r"-[^-]+$", "-zz2zz", pod)
    cooled = to_receiver(stack, crash_looping_payload("payments", other_pod, "api", starts_at=starts_at))
    assert cooled["outcome"] == "cooldown" and run["id"] in cooled["reason"], cooled
    started_by_alerts = [r for r in rollback_runs(stack) if r["parameters"].get("alert")]
    assert [r["id"] for r in started_by_alerts] == [run["id"]], [r["parameters"] for r in started_by_alerts]
    if stack.database:
        assert_on_postgres(stack, run["id"])


def assert_on_postgres(stack: Stack, run_id: str) -> None:
    """The run is a row of PostgreSQL's flow_run table (not of a SQLite file), the receiver kept its state
    there, and the password appears in no output or log."""
    import asyncio

    import asyncpg

    async def row() -> int:
        connection = await asyncpg.connect(stack.database)
        try:
            return await connection.fetchval("SELECT count(*) FROM flow_run WHERE id = $1::uuid", run_id)
        finally:
            await connection.close()
    assert asyncio.run(row()) == 1
    assert not list((stack.directory / "prefect").glob("*.db")), "no SQLite database was created"
    assert "shared state in PostgreSQL" in stack.log("receiver")
    password = stack.database.split(":")[2].split("@")[0]
    logs = [stack.directory / "up.log", *(stack.directory / "logs").glob("*.log")]
    assert "PostgreSQL postgresql://runbooks:***@127.0.0.1" in (stack.directory / "up.log").read_text()
    assert [log.name for log in logs if password in log.read_text(errors="replace")] == []


def test_demo_alert_prints_the_run_to_approve_and_the_printed_command_approves_it(stack):
    demo = subprocess.run([sys.executable, "-m", "runbooks.cli", "demo-alert", "--dir", str(stack.directory),
                           "--service", "cart", "--receiver", stack.receiver_url, "--api-url", stack.api_url],
                          cwd=ROOT, env=stack.env(), capture_output=True, text=True, timeout=180)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    command = next(line.strip() for line in demo.stdout.splitlines() if line.strip().startswith("PREFECT_API_URL="))
    assert command.startswith(f"PREFECT_API_URL={stack.api_url} ") and command.endswith("--as YOUR_NAME")
    run_id = re.search(r" approve (\S+) --as", command).group(1)
    assert run_id in demo.stdout.split(" approve ")[0], "the run id is printed before the command"
    variable, *argv = shlex.split(command.replace("YOUR_NAME", "oncall-lead"))
    approve = subprocess.run(argv, cwd=ROOT, env={**stack.env(), variable.split("=")[0]: variable.split("=", 1)[1]},
                             capture_output=True, text=True, timeout=120)
    assert approve.returncode == 0, approve.stdout + approve.stderr
    assert finished(stack, run_id)["state_type"] == "COMPLETED", stack.log("serve")[-4000:]
    apps = client.AppsV1Api(config.new_client_from_config(config_file=stack.env()["KUBECONFIG"]))
    assert apps.read_namespaced_deployment("cart", "checkout").spec.template.spec.containers[0].image == \
        "ghcr.io/example/cart:0.17.3"


def test_monthly_dry_run_started_by_its_schedule_completes_with_zero_writes(stack):
    """Prefect's scheduler holds the monthly runs; one is moved to now, as if the 1st had come."""
    env = stack.env()
    deployment = httpx.get(f"{stack.api_url}/deployments/name/emergency-rollback/emergency-rollback").json()
    sandbox = env["SANDBOX_URL"]
    since = time.time()
    def move_one_to_now():
        """Pick a scheduler-made run of payments-api and start it now (the scheduler may replace runs
        while it settles, so a vanished one means: pick again)."""
        runs = [r for r in httpx.post(f"{stack.api_url}/flow_runs/filter", json={
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, "tags": {"all_": ["auto-scheduled"]}}}).json()
            if r["parameters"].get("service") == "payments-api"]
        if not runs:
            return None
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        answer = httpx.post(f"{stack.api_url}/flow_runs/{runs[0]['id']}/set_state", timeout=10, json={
            "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": now}},
            "force": True})
        return runs[0] if answer.status_code in (200, 201) and answer.json()["status"] == "ACCEPT" else None
    run = wait_for(move_one_to_now, 90, "a scheduler-made monthly run to start now")
    assert run["parameters"]["dry_run"] is True and run["parameters"]["environment"] == "production"
    done = wait_for(lambda: next((r for r in httpx.post(f"{stack.api_url}/flow_runs/filter", json={
        "flow_runs": {"id": {"any_": [run["id"]]}}}).json() if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")),
        None), 120, "the scheduled dry run to finish")
    assert done["state_type"] == "COMPLETED", stack.log("serve")[-4000:]
    requests = httpx.get(f"{sandbox}/_sandbox/requests", params={"since": since}).json()["requests"]
    assert requests, "the dry run read the cluster"
    assert [r for r in requests if r["is_write"]] == []


def test_cancelling_a_paused_run_terminates_its_process_and_changes_nothing(stack):
    """What the UI's Cancel does: the run's process is terminated and the run ends Cancelled."""
    apps = client.AppsV1Api(config.new_client_from_config(config_file=stack.env()["KUBECONFIG"]))
    before = apps.read_namespaced_deployment("checkout-web", "checkout")
    run_id = gated_rollback_run(stack, reason="cancellation test")
    read = lambda: httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=10).json()  # noqa: E731
    started = wait_for(lambda: re.search(rf"run {run_id} started in process (\d+)", stack.log("serve")), 10,
                       "the runner to log the run's process")
    pid = int(started.group(1))
    assert Path(f"/proc/{pid}").exists()

    answer = httpx.post(f"{stack.api_url}/flow_runs/{run_id}/set_state", timeout=10, json={
        "state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
    assert answer.status_code in (200, 201), answer.text
    wait_for(lambda: read()["state_type"] == "CANCELLED", 60, "the run to end Cancelled")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, "the run's process to exit")
    assert f"cancelling run {run_id}: SIGTERM" in stack.log("serve")
    after = apps.read_namespaced_deployment("checkout-web", "checkout")
    assert after.metadata.generation == before.metadata.generation
    assert after.spec.template.spec.containers[0].image == before.spec.template.spec.containers[0].image
