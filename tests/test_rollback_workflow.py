"""emergency-rollback through the service's release workflow: the real flow under Prefect, the Kubernetes sandbox
for the service, the GitHub stand-in for its pipeline. The test plays the pipeline: when the rollback run is
dispatched, it rolls the Deployment back as the workflow's job would (and other people dispatch the same
workflow at the same moment)."""
from __future__ import annotations

import threading
import time

import pytest

from flows.rollback import emergency_rollback
from sandbox.catalog import DEMO_SERVICES
from sandbox.github import GitHubSandbox
from plans.trigger import AlertContext
from tasks.errors import GuardRefused, TargetNotFound, VerificationFailed
from tests.runbook_helpers import apps_api, release, wait_healthy, write_catalog

from .github_helpers import REPO, connection, gh  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_harness")
GOOD = "ghcr.io/example/payments-api:1.4.2"
BAD = "ghcr.io/example/payments-api:1.5.0-crashloop"
WORKFLOW = "payments-api-rollback.yml"


@pytest.fixture
def estate(demo_sandbox, gh, tmp_path, monkeypatch):
    """A crash-looping release of payments-api (staging, auto-approved) whose catalog names a rollback workflow."""
    service = {**DEMO_SERVICES["payments-api"], "github_repo": REPO, "github": {"rollback_workflow": {
        "workflow": WORKFLOW, "inputs": {"confirm": "ROLLBACK PRODUCTION"}, "reason_input": "reason",
        "correlation_input": "correlation_id", "timeout_seconds": 30}}}
    github = {**connection(gh).model_dump(exclude_none=True), "run_details": False}   # 204: found by correlation id
    path = write_catalog(demo_sandbox, tmp_path, "staging", github=github,
                         services={**DEMO_SERVICES, "payments-api": service})
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(path))
    monkeypatch.setenv("GITHUB_TOKEN", gh.config.token)
    wait_healthy(demo_sandbox)
    release(demo_sandbox, BAD)
    return demo_sandbox


def pipeline(gh: GitHubSandbox, sandbox, *, others: int = 3) -> threading.Thread:
    """When the rollback is dispatched: others dispatch the same workflow in the same second, and the
    workflow's job restores the good image on the cluster."""
    def play() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e.path.endswith(f"/{WORKFLOW}/dispatches") for e in gh.requests.writes()):
                for i in range(others):
                    gh.add_run(REPO, WORKFLOW, event="workflow_dispatch", hold=True, inputs={
                        "confirm": "ROLLBACK PRODUCTION", "reason": "someone else", "correlation_id": f"other-{i}"})
                apps_api(sandbox).patch_namespaced_deployment("payments-api", "payments", {"spec": {"template": {
                    "spec": {"containers": [{"name": "api", "image": GOOD}]}}}})
                return
            time.sleep(0.05)
    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def rollback(**params):
    return emergency_rollback(**{"service": "payments-api", "environment": "staging", "requested_by": "alice",
                                 "reason": "crash loop after 1.5.0", **params})


def image_of(sandbox) -> str:
    return sandbox.get("Deployment", "payments-api", "payments")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_dispatches_the_workflow_follows_its_own_run_and_verifies_the_service(estate, gh):
    gh.config.dispatch_delay = 500                          # lists show a dispatched run 0.5 s late, as GitHub's do
    player = pipeline(gh, estate)
    record = rollback()
    player.join(timeout=5)
    assert record.outcome == "succeeded", record.timeline
    [dispatch] = [e for e in gh.requests.writes() if e.path.endswith("/dispatches")]
    assert dispatch.status == 204 and "return_run_details" not in dispatch.body     # no run id from the server
    assert dispatch.body["inputs"] == {"confirm": "ROLLBACK PRODUCTION", "reason": "crash loop after 1.5.0",
                                       "correlation_id": f"rollback-{record.run_id}"}
    ours = [r for r in gh.repo(REPO).runs.values() if r.inputs.get("correlation_id") == f"rollback-{record.run_id}"]
    assert len(ours) == 1 and any(f"/actions/runs/{ours[0].id}" in line for line in record.evidence)
    assert all(f"runs/{r.id}" not in " ".join(record.evidence) for r in gh.repo(REPO).runs.values() if r is not ours[0])
    assert image_of(estate) == GOOD and any(line.startswith("PASS pods ready") for line in record.evidence)
    # Post-incident: the incident issue with the run report, and a deployment status.
    [incident] = [i for i in gh.issues(REPO) if any(label.name == "incident" for label in i.labels)]
    assert f"runbooks:incident:run-{record.run_id}" in incident.body and "# Runbook: emergency-rollback" in incident.body
    statuses = [e for e in gh.requests.writes() if e.path.endswith("/statuses")]
    assert len(statuses) == 1 and statuses[0].body["state"] == "success"


def test_a_failing_rollback_workflow_fails_the_runbook_with_the_run_url_and_failing_step(estate, gh):
    gh.next_outcome(REPO, WORKFLOW, conclusion="failure", job="rollback", step="Run make test",
                    log=["Error: UPGRADE FAILED: release payments-api has no deployed releases"])
    with pytest.raises(VerificationFailed) as failed:
        rollback()
    [run] = [r for r in gh.repo(REPO).runs.values() if r.event == "workflow_dispatch"]
    assert f"/actions/runs/{run.id}" in str(failed.value) and "failure" in str(failed.value)
    assert "step Run make test" in str(failed.value) and "has no deployed releases" in str(failed.value)


def test_a_second_rollback_while_one_runs_is_refused_and_the_incident_issue_has_both_reports(estate, gh):
    running = gh.add_run(REPO, WORKFLOW, event="workflow_dispatch", hold=True,
                         inputs={"confirm": "ROLLBACK PRODUCTION", "reason": "first", "correlation_id": "first"})
    gh.begin(running.id)
    alert = AlertContext(source="alertmanager", name="KubePodCrashLooping", fingerprint="f00d", severity="warning")
    gh.lost_answers.add(verb="create", path="*/issues", status=502, times=1)  # created; the answer is lost
    for _ in range(2):                                                       # the alert fires twice
        with pytest.raises(GuardRefused, match=f"is in_progress .*/actions/runs/{running.id}"):
            rollback(alert=alert)
    assert not [e for e in gh.requests.writes() if "/dispatches" in e.path] and image_of(estate) == BAD
    [incident] = [i for i in gh.issues(REPO) if any(label.name == "incident" for label in i.labels)]
    assert "(KubePodCrashLooping)" in incident.title and "refused" in incident.body
    assert len(incident.comments) == 1 and "refused" in incident.comments[0].body   # one issue per incident


def test_dry_run_and_bad_input_make_no_write(estate, gh):
    record = rollback(dry_run=True)
    assert record.outcome == "dry-run" and "payments-api-rollback.yml" in record.plan.changes[0].resource
    assert gh.requests.writes() == [] and image_of(estate) == BAD
    seen = len(gh.requests.entries())
    with pytest.raises(TargetNotFound, match="unknown service"):
        rollback(service="payments")
    assert len(gh.requests.entries()) == seen and gh.requests.writes() == []
