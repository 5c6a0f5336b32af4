"""Real PyGithub against the GitHub stand-in's issues, comments, pull requests, deployments and search."""
from __future__ import annotations

import pytest
from github import GithubException

from tests.sandbox.github_helpers import REPO, client

pytestmark = pytest.mark.timeout(30)


def test_issues_and_comments_and_pull_requests_listed_among_issues(gh, github):
    gh.add_pull_request(REPO, "Bump the SDK")
    repo = github.get_repo(REPO)
    issue = repo.create_issue("CI failure: test / Run make test", body="<!-- signature: abc -->", labels=["ci-failure"])
    issue.create_comment("Failed again in run 42")
    listed = {i.number: i for i in repo.get_issues()}
    assert set(listed) == {1, 2}
    assert listed[1].pull_request is not None and listed[2].pull_request is None   # PRs are issues too
    assert [i.number for i in repo.get_issues(labels=["ci-failure"])] == [issue.number]
    assert [c.body for c in repo.get_issue(issue.number).get_comments()] == ["Failed again in run 42"]
    assert repo.get_issue(issue.number).comments == 1
    issue.edit(state="closed")
    assert [i.number for i in repo.get_issues(state="closed")] == [issue.number]
    assert gh.issues(REPO)[1].state_reason == "completed"


def test_an_issue_without_a_title_is_a_422_and_nothing_is_created(gh, github):
    with pytest.raises(GithubException) as raised:
        github.get_repo(REPO)._requester.requestJsonAndCheck("POST", f"{gh.base_url}/repos/{REPO}/issues",
                                                              input={"body": "no title"})
    assert raised.value.status == 422
    assert raised.value.data["errors"] == [{"resource": "Issue", "code": "missing_field", "field": "title"}]
    assert gh.issues(REPO) == []


def test_issue_lists_page_with_link_headers(gh):
    for n in range(5):
        gh.add_issue(REPO, f"incident {n}")
    paged = client(gh, per_page=2).get_repo(REPO).get_issues(state="all")
    assert [i.title for i in paged] == [f"incident {n}" for n in reversed(range(5))]
    links = [e for e in gh.requests.entries() if e.path.endswith("/issues")]
    assert [e.query.get("page") for e in links] == [None, "2", "3"]


def test_search_finds_an_issue_by_a_marker_in_its_body(gh, github):
    gh.add_issue(REPO, "Incident INC-1", body="report\n<!-- runbooks-incident: INC-1 -->", labels=["incident"])
    gh.add_issue(REPO, "Incident INC-2", body="<!-- runbooks-incident: INC-2 -->", labels=["incident"])
    found = github.search_issues(f'repo:{REPO} is:issue in:body "runbooks-incident: INC-2"')
    assert [i.title for i in found] == ["Incident INC-2"]


def test_deployments_and_their_statuses(gh, github):
    repo = github.get_repo(REPO)
    first = repo.create_deployment("v1.2.0", environment="production", description="rollback", required_contexts=[])
    first.create_status("success", environment_url="https://payments.example")
    second = repo.create_deployment("main", environment="production", required_contexts=[])
    second.create_status("in_progress")
    second.create_status("success")
    assert [s.state for s in first.get_statuses()] == ["inactive", "success"]     # auto_inactive
    assert [d.id for d in repo.get_deployments(environment="production")] == [second.id, first.id]
    assert (first.sha, first.ref) == (repo.get_branch("main").commit.sha, "v1.2.0")
    with pytest.raises(GithubException) as raised:
        repo.create_deployment("no-such-ref", required_contexts=[])
    assert raised.value.status == 422


def test_a_deployment_of_a_commit_whose_checks_failed_is_a_409_unless_no_contexts_are_required(gh, github):
    gh.add_workflow(REPO, "ci.yml")
    gh.add_run(REPO, "ci.yml", conclusion="failure", job="test", age=60)
    repo = github.get_repo(REPO)
    with pytest.raises(GithubException) as raised:
        repo.create_deployment("main", environment="production")
    assert raised.value.status == 409
    assert raised.value.data["message"] == "Conflict: Commit status checks failed for main."
    assert raised.value.data["errors"][0]["contexts"] == [{"context": "build", "state": "success"},
                                                          {"context": "test", "state": "failure"}]
    assert repo.create_deployment("main", environment="production", required_contexts=["build"]).ref == "main"
    assert repo.get_deployments().totalCount == 1


def test_repository_comments_are_not_mistaken_for_an_issue_number(gh, github):
    issue = gh.add_issue(REPO, "flaky test")
    github.get_repo(REPO).get_issue(issue.number).create_comment("seen again")
    assert [c.body for c in github.get_repo(REPO).get_issues_comments()] == ["seen again"]
