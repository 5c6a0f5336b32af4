"""Real PyGithub against the GitHub stand-in's Actions API: dispatch (204, 200 with run details, 422s), a run's
status progression and conclusions, jobs and steps, logs behind a signed URL, re-runs and cancel."""
from __future__ import annotations

import pytest
import requests
from github import GithubException

from sandbox.github import JobSpec, Outcome, WorkflowInput
from tests.sandbox.azure_helpers import wait_for
from tests.sandbox.github_helpers import REPO, client

pytestmark = pytest.mark.timeout(30)

ROLLBACK_INPUTS = {"confirm": WorkflowInput(required=True), "reason": WorkflowInput(required=False),
                   "correlation_id": WorkflowInput(required=True),
                   "mode": WorkflowInput(type="choice", options=("fast", "safe"), default="safe")}


def completed(repo, run_id: int):
    return wait_for(lambda: (r := repo.get_workflow_run(run_id)).status == "completed" and r)


def test_dispatch_answers_204_or_200_with_run_details_and_names_the_run_from_its_inputs(gh, github):
    gh.add_workflow(REPO, "rollback.yml", name="Rollback", inputs=ROLLBACK_INPUTS,
                    run_name="Rollback ${{ inputs.correlation_id }}")
    workflow = github.get_repo(REPO).get_workflow("rollback.yml")
    assert workflow.create_dispatch("main", {"confirm": "ROLLBACK PRODUCTION", "correlation_id": "c-1"}) is True
    run = workflow.create_dispatch("v1.2.0", {"confirm": "ROLLBACK PRODUCTION", "correlation_id": "c-2"},
                                   return_run_details=True)
    fetched = github.get_repo(REPO).get_workflow_run(run.id)
    assert (fetched.display_title, fetched.event, fetched.head_branch) == (
        "Rollback c-2", "workflow_dispatch", "v1.2.0")
    [first, second] = gh.runs(REPO, "rollback.yml")
    assert first.inputs == {"confirm": "ROLLBACK PRODUCTION", "correlation_id": "c-1", "mode": "safe"}
    statuses = [(e.method, e.status, e.body.get("return_run_details")) for e in gh.requests.writes()]
    assert statuses == [("POST", 204, None), ("POST", 200, True)]


@pytest.mark.parametrize("ref, inputs, message", [
    ("main", {"confirm": "x", "correlation_id": "c", "extra": "1"}, 'Unexpected inputs provided: ["extra"]'),
    ("main", {"correlation_id": "c"}, "Required input 'confirm' not provided"),
    ("main", {"confirm": "x", "correlation_id": "c", "mode": "reckless"},
     "Provided value 'reckless' for input 'mode' not in the list of allowed values"),
    ("no-such-branch", {"confirm": "x", "correlation_id": "c"}, "No ref found for: no-such-branch"),
])
def test_a_dispatch_github_refuses_is_a_422_that_create_dispatch_reports_as_false(gh, github, ref, inputs, message):
    gh.add_workflow(REPO, "rollback.yml", inputs=ROLLBACK_INPUTS)
    workflow = github.get_repo(REPO).get_workflow("rollback.yml")
    assert workflow.create_dispatch(ref, inputs) is False
    with pytest.raises(GithubException) as raised:
        workflow.create_dispatch(ref, inputs, throw=True)
    assert (raised.value.status, raised.value.data["message"]) == (422, message)
    assert gh.runs(REPO) == []


def test_a_commit_sha_is_no_ref_and_a_workflow_without_the_trigger_cannot_be_dispatched(gh, github):
    gh.add_workflow(REPO, "ci.yml", dispatch=False)
    gh.add_workflow(REPO, "deploy.yml")
    repo = github.get_repo(REPO)
    with pytest.raises(GithubException, match="does not have 'workflow_dispatch' trigger"):
        repo.get_workflow("ci.yml").create_dispatch("main", throw=True)
    sha = repo.get_branch("main").commit.sha
    with pytest.raises(GithubException, match=f"No ref found for: {sha}"):
        repo.get_workflow("deploy.yml").create_dispatch(sha, throw=True)


def test_a_run_goes_queued_then_in_progress_then_completed_and_has_no_conclusion_before(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    gh.next_outcome(REPO, "ci.yml", conclusion="failure", stuck=True, hold=True)
    run = github.get_repo(REPO).get_workflow("ci.yml").create_dispatch("main", return_run_details=True)
    seen = []
    for step in (lambda: None, lambda: gh.begin(run.id), lambda: gh.finish(run.id)):
        step()
        run.update()
        seen.append((run.status, run.conclusion, run.run_attempt))
    assert seen == [("queued", None, 1), ("in_progress", None, 1), ("completed", "failure", 1)]


def test_a_held_run_hangs_in_its_step_with_the_steps_before_it_done_and_logged(gh, github):
    gh.add_workflow(REPO, "deploy.yml", jobs=[JobSpec("deploy", steps=("Set up job", "Run ./migrate",
                                                                       "Run ./rollout", "Complete job"))])
    run = github.get_repo(REPO).get_workflow_run(gh.add_run(REPO, "deploy.yml", hold=True, step="Run ./rollout").id)
    [job] = run.jobs()
    assert job.status == "in_progress" and job.conclusion is None
    assert [(s.name, s.status) for s in job.steps] == [
        ("Set up job", "completed"), ("Run ./migrate", "completed"), ("Run ./rollout", "in_progress"),
        ("Complete job", "queued")]
    log = requests.get(job.logs_url(), timeout=5).text
    assert "##[group]Run ./migrate" in log and "##[group]Run ./rollout" in log and "Cleaning up" not in log


def test_conclusions_github_reports(gh, github):
    gh.add_workflow(REPO, "ci.yml", jobs=["build", "test", JobSpec("deploy", skipped=True)])
    gh.add_workflow(REPO, "docs.yml", jobs=[JobSpec("publish", skipped=True)])
    runs = {c: gh.add_run(REPO, "ci.yml", conclusion=c, age=60).id
            for c in ("startup_failure", "action_required", "timed_out", "cancelled", "success")}
    all_skipped = gh.add_run(REPO, "docs.yml", age=60).id
    repo = github.get_repo(REPO)
    got = {c: repo.get_workflow_run(i) for c, i in runs.items()}
    assert {c: r.conclusion for c, r in got.items()} == {c: c for c in runs}
    assert got["startup_failure"].jobs().totalCount == 0 and got["action_required"].jobs().totalCount == 0
    jobs = {j.name: j.conclusion for j in got["success"].jobs()}
    assert jobs == {"build": "success", "test": "success", "deploy": "skipped"}      # a skip is not a failure
    assert {j.name: j.conclusion for j in got["timed_out"].jobs()}["test"] == "timed_out"
    assert repo.get_workflow_run(all_skipped).conclusion == "skipped"


def test_jobs_steps_and_the_log_behind_a_signed_url_fetched_without_the_token(gh, github):
    gh.add_workflow(REPO, "ci.yml", jobs=["build", JobSpec("test", steps=("Set up job", "Run make test",
                                                                            "Run make lint", "Complete job"))])
    run_id = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", step="Run make test",
                        log=["FAILED tests/test_pay.py::test_refund - AssertionError"], age=60).id
    run = github.get_repo(REPO).get_workflow_run(run_id)
    [build, test] = run.jobs()
    assert [(s.name, s.conclusion) for s in test.steps] == [
        ("Set up job", "success"), ("Run make test", "failure"), ("Run make lint", "skipped"),
        ("Complete job", "success")]
    url = test.logs_url()
    assert url.startswith(gh.url + "/_blobs/") and "sig=" in url and "se=" in url
    text = requests.get(url, timeout=5).text
    assert "FAILED tests/test_pay.py::test_refund - AssertionError\n" in text
    assert "##[error]Process completed with exit code 1." in text
    with_token = requests.get(url, headers={"Authorization": f"token {gh.config.token}"}, timeout=5)
    forged = requests.get(url.replace("sig=", "sig=0"), timeout=5)
    assert (with_token.status_code, forged.status_code) == (400, 403)
    assert "<Code>AuthenticationFailed</Code>" in forged.text


def test_a_log_url_expires(gh, github):
    gh.blobs.lifetime = -1.0            # already past its expiry when handed out
    gh.add_workflow(REPO, "ci.yml")
    run = github.get_repo(REPO).get_workflow_run(gh.add_run(REPO, "ci.yml", age=60).id)
    answer = requests.get(run.jobs()[0].logs_url(), timeout=5)
    assert answer.status_code == 403 and "Signature not valid in the specified time frame" in answer.text


def test_a_lost_runner_ends_the_log_with_its_own_error(gh, github):
    lost = "The hosted runner: GitHub Actions 3 lost communication with the server."
    gh.add_workflow(REPO, "ci.yml")
    run_id = gh.add_run(REPO, "ci.yml", conclusion="failure", error=lost, age=60).id
    run = github.get_repo(REPO).get_workflow_run(run_id)
    failed = next(j for j in run.jobs() if j.conclusion == "failure")
    assert requests.get(failed.logs_url(), timeout=5).text.rstrip().splitlines()[-2].endswith(f"##[error]{lost}")


def test_a_flaky_workflow_fails_once_and_passes_when_its_failed_jobs_are_re_run(gh, github):
    gh.add_workflow(REPO, "ci.yml", outcome=Outcome(conclusion="failure", job="test", flaky=True))
    repo = github.get_repo(REPO)
    run = repo.get_workflow_run(gh.add_run(REPO, "ci.yml", age=60).id)
    assert run.conclusion == "failure"
    build_id = next(j.id for j in run.jobs() if j.name == "build")
    assert run.rerun_failed_jobs() is True
    again = completed(repo, run.id)
    assert (again.id, again.run_attempt, again.conclusion) == (run.id, 2, "success")
    assert again.previous_attempt_url.endswith(f"/actions/runs/{run.id}/attempts/1")
    first = repo.get_workflow_run(run.id)._requester.requestJsonAndCheck("GET", again.previous_attempt_url)[1]
    assert (first["run_attempt"], first["conclusion"]) == (1, "failure")
    latest = {j.name: (j.id, j.run_attempt, j.conclusion) for j in again.jobs()}
    assert latest["build"] == (build_id, 1, "success")            # not re-run: its earlier result stands
    assert latest["test"][1:] == (2, "success")
    assert sorted((j.name, j.run_attempt) for j in again.jobs("all")) == [("build", 1), ("test", 1), ("test", 2)]


def test_a_real_failure_fails_again_and_a_running_run_cannot_be_re_run(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    repo = github.get_repo(REPO)
    failed = repo.get_workflow_run(gh.add_run(REPO, "ci.yml", conclusion="failure", age=60).id)
    assert failed.rerun_failed_jobs() is True
    assert completed(repo, failed.id).conclusion == "failure"
    running = repo.get_workflow_run(gh.add_run(REPO, "ci.yml", hold=True, age=60).id)
    assert running.status == "in_progress"
    with pytest.raises(GithubException) as raised:
        repo._requester.requestJsonAndCheck("POST", f"{running.url}/rerun-failed-jobs")
    assert raised.value.status == 403


def test_a_run_stuck_in_the_queue_is_cancelled_and_a_completed_one_cannot_be(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    repo = github.get_repo(REPO)
    stuck = repo.get_workflow_run(gh.add_run(REPO, "ci.yml", stuck=True, age=7200).id)
    assert stuck.status == "queued"
    assert stuck.cancel() is True
    stuck.update()
    assert (stuck.status, stuck.conclusion) == ("completed", "cancelled")
    assert [j.conclusion for j in stuck.jobs()] == ["cancelled", "cancelled"]
    assert stuck.cancel() is False                   # 409: it has completed
    assert gh.requests.writes()[-1].status == 409


def test_run_lists_filter_and_paginate_with_link_headers(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    gh.add_workflow(REPO, "nightly.yml")
    for i in range(7):
        gh.add_run(REPO, "ci.yml", conclusion="failure" if i % 3 == 0 else "success", age=60)
    gh.add_run(REPO, "nightly.yml", age=60, event="schedule")
    gh.add_commit(REPO, branch="release", message="Fix refunds\n\nThe refund path rounded twice.")
    gh.add_run(REPO, "ci.yml", branch="release", stuck=True)
    repo = github.get_repo(REPO)
    assert [(r.display_title, r.name) for r in repo.get_workflow_runs(branch="release")] == [("Fix refunds", "ci")]
    failed = repo.get_workflow("ci.yml").get_runs(status="failure")
    assert failed.totalCount == 3 and {r.conclusion for r in failed} == {"failure"}
    assert [r.head_branch for r in repo.get_workflow_runs(status="queued")] == ["release"]
    assert [r.event for r in repo.get_workflow_runs(event="schedule")] == ["schedule"]
    paged = client(gh, per_page=3).get_repo(REPO).get_workflow_runs()
    ids = [r.id for r in paged]
    assert len(ids) == 9 and ids == sorted(ids, reverse=True)
    pages = [e for e in gh.requests.entries() if e.path.endswith("/actions/runs") and "page" in e.query]
    assert sorted(e.query["page"] for e in pages) == ["2", "3"]


def test_actions_report_through_check_runs_so_the_combined_status_is_pending_with_no_statuses(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", age=60)
    commit = github.get_repo(REPO).get_commit("main")
    combined = commit.get_combined_status()
    assert (combined.state, combined.total_count, combined.statuses) == ("pending", 0, [])
    checks = {c.name: (c.status, c.conclusion, c.app.slug) for c in commit.get_check_runs()}
    assert checks == {"build": ("completed", "success", "github-actions"),
                      "test": ("completed", "failure", "github-actions")}
    gh.add_status(REPO, commit.sha, "success", "external/scan")
    assert commit.get_combined_status().state == "success"


def test_a_dispatched_run_reaches_run_lists_only_after_a_delay_but_is_there_by_id_at_once(gh, github):
    gh.config.dispatch_delay = 3600.0                 # simulated: 3.6 s at 1000x
    gh.add_workflow(REPO, "ci.yml")
    repo = github.get_repo(REPO)
    run = repo.get_workflow("ci.yml").create_dispatch("main", return_run_details=True)
    assert repo.get_workflow_runs().totalCount == 0
    assert repo.get_workflow_run(run.id).event == "workflow_dispatch"
    gh.run(run.id).visible_after = 0.0                # time passes
    assert [r.id for r in repo.get_workflow_runs()] == [run.id]
