"""The CI triage planner on typed fixtures, no server: log analysis, classification, signatures, stuck runs,
the triage plan, and the catalog's GitHub settings."""
from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from plans.ci import JobFacts, RunFacts, StepFacts, after_rerun, analyse_log, classify, failure_of, signature, \
    stuck_runs
from plans.ci_triage import comment_body, issue_body, plan_triage, run_marker, signature_marker
from plans.targets import RepositoryTarget
from tasks.catalog import Catalog
from tasks.github.settings import GitHubConnection

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
LOG = """2026-11-30T11:00:00.0000000Z Current runner version: '2.321.0'
2026-11-30T11:00:00.0000000Z ##[group]Run actions/checkout@v4
2026-11-30T11:00:00.0000000Z actions/checkout@v4
2026-11-30T11:00:00.0000000Z ##[endgroup]
2026-11-30T11:00:01.0000000Z ##[group]Run make test
2026-11-30T11:00:01.0000000Z make test
2026-11-30T11:00:01.0000000Z ##[endgroup]
2026-11-30T11:00:09.0000000Z \x1b[31mFAILED tests/test_pay.py::test_refund\x1b[0m
2026-11-30T11:00:09.0000000Z AssertionError: expected 200, got 500 after 3.2s
2026-11-30T11:00:09.0000000Z ##[error]Process completed with exit code 1.
2026-11-30T11:00:10.0000000Z Cleaning up orphan processes
"""


def run(conclusion: str | None = "failure", *, status: str = "completed", attempt: int = 1, age_minutes: int = 5,
        run_id: int = 7) -> RunFacts:
    return RunFacts(id=run_id, workflow_id=1, path=".github/workflows/ci.yml", head_branch="main", status=status,
                    conclusion=conclusion, run_attempt=attempt, created_at=NOW - dt.timedelta(minutes=age_minutes),
                    html_url=f"https://github.com/acme/pay/actions/runs/{run_id}")


def job(conclusion: str = "failure", failing: str = "Run make test") -> JobFacts:
    steps = [StepFacts(name="Set up job", number=1, conclusion="success"),
             StepFacts(name=failing, number=2, conclusion=conclusion)]
    return JobFacts(id=11, name="test", status="completed", conclusion=conclusion, steps=steps)


def test_log_analysis_finds_the_failing_step_and_the_lines_before_its_error():
    excerpt = analyse_log(job(), LOG)
    assert excerpt.step == "Run make test"
    assert excerpt.lines == ["make test", "FAILED tests/test_pay.py::test_refund",
                             "AssertionError: expected 200, got 500 after 3.2s", "Process completed with exit code 1."]
    assert not excerpt.runner_lost


def test_log_analysis_takes_the_step_from_the_log_group_when_the_job_has_no_steps():
    bare = JobFacts(id=1, name="test", status="completed", conclusion="failure")
    assert analyse_log(bare, LOG).step == "make test"


@pytest.mark.parametrize("the_run, the_job, log, kind", [
    (run("startup_failure"), None, "", "infrastructure"),
    (run("timed_out"), job("timed_out"), LOG, "infrastructure"),
    (run("cancelled"), job("cancelled"), LOG, "infrastructure"),
    (run(), job(), LOG + "Z ##[error]The runner has received a shutdown signal.\n", "infrastructure"),
    (run(), job(), LOG, "rerun"),
    (run(attempt=2), job(), LOG, "failure"),
])
def test_classification(the_run, the_job, log, kind):
    excerpt = analyse_log(the_job, log) if the_job else analyse_log(job(), "")
    assert classify(the_run, the_job, excerpt, rerun_allowed=True)[0] == kind


def test_without_a_rerun_allowed_a_failure_is_real_and_a_passing_rerun_is_flaky():
    excerpt = analyse_log(job(), LOG)
    assert classify(run(), job(), excerpt, rerun_allowed=False)[0] == "failure"
    candidate = failure_of("acme/pay", run(), job(), excerpt, rerun_allowed=True)
    assert after_rerun(candidate, run("success", attempt=2)).kind == "flaky"
    assert after_rerun(candidate, run("failure", attempt=2)).kind == "rerun"     # inspected again by the flow


def test_signature_ignores_numbers_and_hashes_but_not_the_error():
    base = dict(repository="acme/pay", workflow="ci.yml", job="test", step="Run make test")
    one = signature(**base, lines=["AssertionError: expected 200, got 500 after 3.2s", "Process completed with exit code 1."])
    two = signature(**base, lines=["AssertionError: expected 200, got 500 after 9.9s", "Process completed with exit code 2."])
    other = signature(**base, lines=["KeyError: 'refund'", "Process completed with exit code 1."])
    case_2 = signature(**base, lines=["AssertionError in test_case_2: 7 != 0"])
    case_3 = signature(**base, lines=["AssertionError in test_case_3: 7 != 0"])
    assert one == two != other and case_2 != case_3 and case_2 == signature(**base, lines=[
        "AssertionError in test_case_2: 12 != 0"])


def test_stuck_runs_are_queued_past_the_limit_only():
    runs = [run(None, status="queued", age_minutes=90, run_id=1), run(None, status="queued", age_minutes=5, run_id=2),
            run(None, status="in_progress", age_minutes=90, run_id=3)]
    assert [r.id for r in stuck_runs(runs, now=NOW, limit=dt.timedelta(minutes=30))] == [1]


def test_plan_reruns_candidates_files_issues_by_signature_and_cancels_stuck_runs():
    target = RepositoryTarget(environment="production", cluster="github.com", repository="acme/pay")
    excerpt = analyse_log(job(), LOG)
    candidate = failure_of("acme/pay", run(run_id=7), job(), excerpt, rerun_allowed=True)
    real = failure_of("acme/pay", run(run_id=8, attempt=2), job(), excerpt, rerun_allowed=True)
    stuck = run(None, status="queued", age_minutes=90, run_id=9)
    triage = plan_triage(target, [candidate, real], [stuck], {real.signature: (4, "u")}, stuck_after_minutes=30)
    fields = [(c.resource.split(" (")[0], c.field, c.after) for c in triage.plan.changes]
    assert ("workflow run 7", "failed jobs", "re-run once") in fields
    assert ("issue for ci.yml / test / Run make test", f"signature {real.signature}", "comment") in fields
    assert ("workflow run 9", "status", "cancelled, dispatched again on main") in fields
    assert [f.run_id for f in triage.reruns] == [7] and triage.stuck == [stuck]
    assert plan_triage(target, [], [], {}, stuck_after_minutes=30).plan.is_noop


def test_issue_text_carries_its_markers_the_failing_step_and_the_log_lines():
    failure = failure_of("acme/pay", run(attempt=2), job(), analyse_log(job(), LOG), rerun_allowed=False)
    body = issue_body(failure.signature, [failure])
    assert signature_marker(failure.signature) in body and run_marker(failure) in body
    assert "**Failing step**: Run make test" in body and "AssertionError: expected 200" in body
    assert run_marker(failure) in comment_body([failure])


def test_catalog_github_settings_are_validated():
    env = {"cluster": {"kind": "in-cluster"}, "github": {"base_url": "https://ghe.example.com/api/v3"},
           "services": {"pay": {"namespace": "p", "deployment": "pay", "github_repo": "acme/pay", "github": {
               "rerun_flaky": True, "rollback_workflow": {"workflow": "pay-rollback.yml",
                                                          "inputs": {"confirm": "ROLLBACK PRODUCTION"}}}}}}
    catalog = Catalog.model_validate({"environments": {"production": env}})
    target, services = catalog.repository_target("production", "acme/pay")
    assert (target.cluster, target.key, services) == ("ghe.example.com", "ghe.example.com/-/Repository/acme/pay",
                                                      ["pay"])
    bad_repo = {**env, "services": {"pay": {"namespace": "p", "deployment": "pay", "github_repo": "not a repo"}}}
    with pytest.raises(ValidationError, match="owner/name"):
        Catalog.model_validate({"environments": {"production": bad_repo}})
    with pytest.raises(ValidationError, match="not both"):
        GitHubConnection(token_secret="t", app={"app_id": 1, "installation_id": 2})
    with pytest.raises(ValidationError, match="http"):
        GitHubConnection(base_url="ghe.example.com")
