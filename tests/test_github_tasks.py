"""The GitHub tasks with real PyGithub over real HTTP against the GitHub stand-in: every task, pagination, rate
limits ridden out with a cap, GitHub's errors mapped to the kernel's taxonomy, writes that are safe to retry,
and credentials that never reach a log. Tasks are called through `.fn` (the function Prefect wraps)."""
from __future__ import annotations

import datetime as dt
import logging

import pytest

from tasks.errors import AccessDenied, CatalogError, PermanentError, TargetNotFound
from tasks.github import deployments, issues, runs, workflows
from tasks.github.client import github_client
from tasks.github.settings import GitHubApp, GitHubConnection

from .github_helpers import REPO, client_for, connection, gh, github, requests_to  # noqa: F401

LOG = ["collected 212 items", "FAILED tests/test_refund.py::test_partial", "AssertionError: 500 != 200"]


def test_runs_are_listed_across_every_page_with_the_fewest_requests(gh, github):
    for _ in range(230):
        gh.add_run(REPO, "ci.yml", conclusion="success", age=120)
    listed = runs.list_workflow_runs.fn(github, repository=REPO, workflow="ci.yml", status="completed")
    assert len(listed) == 230 and len({r.id for r in listed}) == 230
    pages = requests_to(gh, "/actions/workflows/ci.yml/runs")
    assert len(pages) == 3 and all(p.query.get("per_page") == "100" for p in pages)    # 100 a page, GitHub's most


def test_a_failed_job_its_log_fetched_without_the_token_and_a_rerun_of_its_failed_jobs(gh, github):
    run = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", log=LOG, flaky=True, age=120)
    [failed] = [j for j in runs.list_run_jobs.fn(github, repository=REPO, run_id=run.id) if j.failed]
    log = runs.read_job_log.fn(github, repository=REPO, job_id=failed.id)
    assert "AssertionError: 500 != 200" in log and "##[error]" in log
    blob = [e for e in gh.requests.entries() if e.path.startswith("/_blobs/")]
    assert blob and blob[0].status == 200               # the stand-in refuses a blob request carrying a token
    again = runs.rerun_failed_jobs.fn(github, repository=REPO, run_id=run.id, expected_attempt=1)
    assert again.changed and again.run_attempt == 2
    done = runs.wait_for_run.fn(github, repository=REPO, run_id=run.id, min_attempt=2, timeout_seconds=20)
    assert (done.run_attempt, done.conclusion) == (2, "success")
    repeat = runs.rerun_failed_jobs.fn(github, repository=REPO, run_id=run.id, expected_attempt=1)
    assert not repeat.changed and len([e for e in gh.requests.writes() if "rerun" in e.path]) == 1


def test_waiting_for_a_run_polls_with_conditional_requests_that_cost_no_rate_limit(gh, github):
    held = gh.add_run(REPO, "ci.yml", hold=True)
    gh.begin(held.id)                                       # in_progress now, and unchanged from here on
    seen = runs.wait_for_run.fn(github, repository=REPO, run_id=held.id, timeout_seconds=2.2)
    assert seen.status == "in_progress"                     # the deadline passed: the run as last seen
    polls = [e.status for e in gh.requests.entries() if e.path.endswith(f"/actions/runs/{held.id}")]
    assert polls[0] == 200 and len(polls) >= 3 and set(polls[1:]) == {304}
    remaining = github.requester.requestJsonAndCheck("GET", f"{gh.base_url}/rate_limit")[1]["resources"]["core"]
    assert remaining["used"] == 1 + 0                       # only the first poll counted (rate_limit itself is free)


def test_cancel_a_stuck_run_is_idempotent(gh, github):
    stuck = gh.add_run(REPO, "ci.yml", stuck=True, age=3600)
    first = runs.cancel_workflow_run.fn(github, repository=REPO, run_id=stuck.id)
    second = runs.cancel_workflow_run.fn(github, repository=REPO, run_id=stuck.id)
    assert first.changed and not second.changed and gh.run_status(stuck.id) == ("completed", "cancelled")
    assert len([e for e in gh.requests.writes() if e.path.endswith("/cancel")]) == 1


def test_primary_rate_limit_is_waited_out_until_its_reset(gh, github):
    gh.add_run(REPO, "ci.yml", conclusion="success", age=120)
    gh.rate_limits.exhaust(reset_in=1.0, status=403)
    listed = runs.list_workflow_runs.fn(github, repository=REPO)
    assert len(listed) == 1
    statuses = [e.status for e in requests_to(gh, "/actions/runs")]
    assert statuses[0] == 403 and statuses[-1] == 200


def test_primary_rate_limit_resetting_after_the_cap_fails_at_once(gh, github):
    gh.rate_limits.exhaust(reset_in=3600, status=429)
    with pytest.raises(PermanentError, match=r"resets in \d+s, later than the 60s"):
        runs.list_workflow_runs.fn(github, repository=REPO)
    assert len(requests_to(gh, "/actions/runs")) == 1        # no retry: waiting an hour is not worth it


def test_secondary_rate_limit_honours_retry_after_and_is_logged(gh, github, caplog):
    gh.rate_limits.secondary(retry_after=1, times=1)
    with caplog.at_level(logging.WARNING, logger="tasks.calls"):
        assert runs.list_workflow_runs.fn(github, repository=REPO) == []
    assert [e.status for e in requests_to(gh, "/actions/runs")] == [429, 200]
    assert "rate limited" in caplog.text and "retry 1/5 in 1.0s" in caplog.text


@pytest.mark.parametrize("case, error, text", [
    ("bad token", AccessDenied, "GitHub 401: Bad credentials"),
    ("no such repository", TargetNotFound, "GitHub 404"),
    ("a sha is not a ref", PermanentError, "No ref found for"),
    ("undeclared input", PermanentError, "Unexpected inputs provided"),
])
def test_github_errors_are_mapped_to_the_taxonomy(gh, case, error, text):
    github = client_for(gh, token="ghp_wrong_token_000000" if case == "bad token" else None)
    since = dt.datetime.now(dt.timezone.utc)
    repository = "acme/nothing" if case == "no such repository" else REPO
    inputs = {"confirm": "ROLLBACK PRODUCTION", "reason": "r", "correlation_id": "c"}
    if case == "undeclared input":
        inputs["force"] = "true"
    ref = "0" * 40 if case == "a sha is not a ref" else "main"
    with pytest.raises(error, match=text):
        if case in ("bad token", "no such repository"):
            runs.list_workflow_runs.fn(github, repository=repository)
        else:
            workflows.dispatch_workflow.fn(github, repository=REPO, workflow="payments-api-rollback.yml", ref=ref,
                                           inputs=inputs, correlation_id="c", since=since)
    assert gh.requests.writes() == [] or all(e.status >= 400 for e in gh.requests.writes())


def test_dispatch_returns_the_run_and_finds_it_by_correlation_id_when_details_are_missing(gh, github):
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    inputs = {"confirm": "ROLLBACK PRODUCTION", "reason": "bad release", "correlation_id": "corr-42"}
    sent = workflows.dispatch_workflow.fn(github, repository=REPO, workflow="payments-api-rollback.yml", ref="main",
                                          inputs=inputs, correlation_id="corr-42", since=since)
    assert sent.changed and sent.run_id is not None
    others = [gh.add_run(REPO, "payments-api-rollback.yml", event="workflow_dispatch", hold=True,
                         inputs={**inputs, "correlation_id": f"other-{i}"}) for i in range(3)]
    without = sent.model_copy(update={"run_id": None})
    found = workflows.find_dispatched_run.fn(github, repository=REPO, dispatch=without, since=since)
    assert found.id == sent.run_id and found.id not in {o.id for o in others}
    active = workflows.list_active_runs.fn(github, repository=REPO, workflow="payments-api-rollback.yml")
    assert {o.id for o in others} <= {r.id for r in active}


def test_a_dispatch_whose_answer_is_lost_is_found_by_its_correlation_id_not_sent_twice(gh, github):
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    gh.lost_answers.add(verb="create", path="*/dispatches", status=502, times=1)  # the run starts, the answer is lost
    inputs = {"confirm": "ROLLBACK PRODUCTION", "reason": "bad release", "correlation_id": "corr-lost"}
    sent = workflows.dispatch_workflow.fn(github, repository=REPO, workflow="payments-api-rollback.yml", ref="main",
                                          inputs=inputs, correlation_id="corr-lost", since=since)
    [run] = [r for r in gh.repo(REPO).runs.values() if r.event == "workflow_dispatch"]
    assert sent.run_id == run.id and len([e for e in gh.requests.writes() if e.path.endswith("/dispatches")]) == 1


def test_issue_and_comment_are_found_by_marker_and_never_duplicated_on_a_retried_post(gh, github):
    gh.add_pull_request(REPO, "A PR with the marker <!-- runbooks:ci-failure:abc -->",
                        body="<!-- runbooks:ci-failure:abc -->")
    mark = issues.marker("ci-failure", "abc")
    assert issues.find_issue.fn(github, repository=REPO, label="ci-failure", mark=mark) is None   # PRs are not issues
    gh.lost_answers.add(verb="create", path="*/issues", status=502, times=1)    # created, but the answer is lost
    opened = issues.open_issue.fn(github, repository=REPO, title="CI failure", body=f"{mark}\nbody",
                                  label="ci-failure", mark=mark)
    found = issues.find_issue.fn(github, repository=REPO, label="ci-failure", mark=mark)
    assert opened.changed and found is not None and found.number == opened.number
    gh.lost_answers.add(verb="create", path="*/comments", status=503, times=1)
    issues.comment_issue.fn(github, repository=REPO, number=opened.number, body="<!-- c1 --> again", mark="<!-- c1 -->")
    [issue] = [i for i in gh.issues(REPO) if i.number == opened.number]
    assert len(issue.comments) == 1 and len([i for i in gh.issues(REPO) if i.body and mark in i.body]) == 2  # + the PR
    assert len([e for e in gh.requests.writes() if e.path.endswith("/issues")]) == 1   # found, not re-sent


def test_deployment_status_is_recorded_once_per_run(gh, github):
    first = deployments.record_deployment_status.fn(github, repository=REPO, environment="production", ref="main",
                                                    state="in_progress", description="rollback", marker="run-1")
    second = deployments.record_deployment_status.fn(github, repository=REPO, environment="production", ref="main",
                                                     state="success", description="rollback", marker="run-1")
    assert first.deployment_id == second.deployment_id
    assert len([e for e in gh.requests.writes() if e.path.endswith("/deployments")]) == 1
    assert len([e for e in gh.requests.writes() if e.path.endswith("/statuses")]) == 2
    assert deployments.default_branch(github, REPO) == "main"            # the ref of a deploy that names none


def test_credentials_come_from_the_environment_or_an_app_and_never_reach_a_log(gh, caplog):
    with pytest.raises(CatalogError, match="GITHUB_TOKEN"):
        github_client(connection(gh), {})
    app = gh.app()
    conn = GitHubConnection(base_url=gh.base_url, seconds_between_writes=0,
                            app=GitHubApp(app_id=app.id, installation_id=app.installation_id))
    with caplog.at_level(logging.DEBUG):
        client = github_client(conn, {"GITHUB_APP_PRIVATE_KEY": app.private_key})
        assert runs.list_workflow_runs.fn(client, repository=REPO) == []
        logging.getLogger("runbooks.test").warning("token %s", client.requester.auth.token)
    assert client.requester.auth.token not in caplog.text and gh.config.token not in caplog.text
