"""The ci-failure-triage runbook end to end: the real flow under Prefect, real PyGithub, the GitHub stand-in seeded
with failed, flaky and stuck runs; what the runbook did is read back from the stand-in's state and request log."""
from __future__ import annotations

import uuid

import pytest
import yaml

from flows.ci_triage import ci_failure_triage
from sandbox.github import GitHubSandbox, Outcome
from tasks.errors import TargetNotFound
from tasks.gate_answer import answer_gate
from tests.runbook_helpers import answered_at_gate

from .github_helpers import REPO, connection, gh  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_harness")
FAILING = ["collected 212 items", "FAILED tests/test_refund.py::test_partial", "AssertionError: 500 != 200"]
APPROVAL = {"production": {"policy": "one", "timeout_seconds": 60}, "staging": {"policy": "auto"}}


def write_catalog(gh: GitHubSandbox, path, environment: str = "staging", *, rerun: bool = True,
                  token_secret: str | None = None) -> str:
    """One environment whose payments-api names the stand-in's repository and its CI settings; the token from
    GITHUB_TOKEN, or from the Prefect Secret block `token_secret`."""
    service = {"namespace": "payments", "deployment": "payments-api", "github_repo": REPO,
               "github": {"ci_workflows": ["ci.yml"], "rerun_flaky": rerun, "stuck_after_minutes": 30}}
    env = {"cluster": {"kind": "in-cluster"}, "approval": APPROVAL[environment], "cooldown_seconds": 0,
           "github": {**connection(gh).model_dump(exclude_none=True), "token_secret": token_secret},
           "services": {"payments-api": service}}
    path.write_text(yaml.safe_dump({"environments": {environment: env}}))
    return str(path)


@pytest.fixture
def catalog(gh, tmp_path, monkeypatch):
    def use(environment: str = "staging", **options) -> None:
        monkeypatch.setenv("RUNBOOKS_CATALOG", write_catalog(gh, tmp_path / f"{environment}.yaml", environment,
                                                             **options))
    monkeypatch.setenv("GITHUB_TOKEN", gh.config.token)
    use()
    return use


def triage(**params):
    return ci_failure_triage(**{"environment": "staging", "repository": REPO, "requested_by": "alice", **params})


def ci_issues(gh: GitHubSandbox) -> list:
    return [i for i in gh.issues(REPO) if any(label.name == "ci-failure" for label in i.labels)]


def test_flaky_job_rerun_passes_real_failure_gets_one_issue_and_the_same_failure_again_a_comment(gh, catalog):
    flaky = gh.add_run(REPO, "ci.yml", Outcome(conclusion="failure", job="test", log=["flaked: timeout"],
                                               flaky=True), age=120)
    real = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", log=FAILING, age=110)
    infra = gh.add_run(REPO, "ci.yml", conclusion="timed_out", job="test", age=100)
    record = triage()
    assert record.outcome == "succeeded", record.timeline
    assert gh.run_status(flaky.id) == ("completed", "success") and len(gh.run(flaky.id).attempts) == 2
    assert len(gh.run(infra.id).attempts) == 1                     # a timeout is infrastructure: not re-run
    [issue] = ci_issues(gh)
    assert "**Failing step**: Run make test" in issue.body and "AssertionError: 500 != 200" in issue.body
    assert f"/actions/runs/{real.id}" in issue.body and "flaked" not in issue.body
    assert any("infrastructure" in line and str(infra.id) in line for line in record.plan.evidence)

    again = gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", log=FAILING, age=5)
    second = triage()
    assert second.outcome == "succeeded"
    [same] = ci_issues(gh)                                            # a comment, not a second issue
    assert same.number == issue.number and len(same.comments) == 1
    assert f"/actions/runs/{again.id}" in same.comments[0].body and f"runs/{real.id})" not in same.comments[0].body
    third = triage()
    assert third.outcome == "no-op" and len(ci_issues(gh)[0].comments) == 1   # nothing reported twice


def test_stuck_run_is_cancelled_and_dispatched_again_after_approval(gh, catalog):
    catalog("production")
    stuck = gh.add_run(REPO, "ci.yml", stuck=True, age=2 * 3600, branch="release")
    box, _ = answered_at_gate(lambda: triage(environment="production"), "ci-failure-triage",
                              lambda run: answer_gate(run, approver="bob", decision="approve"))
    record = box["result"]
    assert record.outcome == "succeeded" and [a.approver for a in record.approvals] == ["bob"]
    assert gh.run_status(stuck.id) == ("completed", "cancelled")
    fresh = [r for r in gh.repo(REPO).runs.values() if r.event == "workflow_dispatch"]
    assert len(fresh) == 1 and fresh[0].branch == "release"
    assert any(f"dispatched again as run {fresh[0].id}" in line for line in record.evidence)


def test_dry_run_and_bad_input_write_nothing(gh, catalog, monkeypatch):
    from prefect.blocks.system import Secret
    name = f"github-token-{uuid.uuid4().hex[:8]}"
    Secret(value=gh.config.token).save(name)
    monkeypatch.delenv("GITHUB_TOKEN")
    catalog(token_secret=name)                                                # the token from a Secret block
    gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", log=FAILING, age=120)
    gh.add_run(REPO, "ci.yml", stuck=True, age=2 * 3600)
    record = triage(dry_run=True)
    assert record.outcome == "dry-run" and len(record.plan.changes) == 3      # re-run, issue, stuck run
    assert gh.requests.entries() and gh.requests.writes() == []
    before = len(gh.requests.entries())
    with pytest.raises(TargetNotFound, match="allowed: acme/payments-api"):
        triage(repository="acme/unknown")
    with pytest.raises(TargetNotFound, match="unknown environment"):
        triage(environment="prod")
    assert len(gh.requests.entries()) == before                               # not even a read
