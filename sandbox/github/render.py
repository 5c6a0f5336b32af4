"""The JSON GitHub answers with, shaped after the schemas and examples of GitHub's OpenAPI description
(github/rest-api-description: `repository`, `workflow`, `workflow-run`, `job`, `check-run`, `issue`,
`issue-comment`, `deployment`, `deployment-status`, `combined-commit-status`). URLs are absolute, under the API
root (`/api/v3` on GitHub Enterprise Server) or the web root, as PyGithub follows them."""
from __future__ import annotations

import base64
from dataclasses import dataclass

from . import actions
from .model import (Attempt, Comment, Commit, CommitStatus, Deployment, DeploymentStatus, Issue, Job, Label,
                    Repo, Run, Workflow, fake_sha, iso)


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Urls:
    api: str            # e.g. http://127.0.0.1:PORT/api/v3
    web: str            # e.g. http://127.0.0.1:PORT

    def repo(self, repo: Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo_web(self, repo: Repo) -> str:
        return f"{self.web}/{repo.full_name}"


def user(urls: Urls, login: str) -> dict:
    number = sum(login.encode()) + 1000
    bot = login.endswith("[bot]")
    return {"login": login, "id": number, "node_id": node_id("User", number),
            "avatar_url": f"{urls.web}/avatars/u/{number}", "gravatar_id": "", "url": f"{urls.api}/users/{login}",
            "html_url": f"{urls.web}/{login}", "type": "Bot" if bot else "User", "site_admin": False}


def repository(urls: Urls, repo: Repo, *, full: bool = True) -> dict:
    url = urls.repo(repo)
    body = {"id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": repo.private, "owner": user(urls, repo.owner),
            "html_url": urls.repo_web(repo), "description": None, "fork": False, "url": url,
            "issues_url": f"{url}/issues{{/number}}", "pulls_url": f"{url}/pulls{{/number}}",
            "deployments_url": f"{url}/deployments", "statuses_url": f"{url}/statuses/{{sha}}",
            "commits_url": f"{url}/commits{{/sha}}", "branches_url": f"{url}/branches{{/branch}}",
            "labels_url": f"{url}/labels{{/name}}", "hooks_url": f"{url}/hooks"}
    body.update({f"{name}_url": f"{url}/{path}" for name, path in _REPO_URLS.items()})
    if full:
        body.update({"default_branch": repo.default_branch, "visibility": "private" if repo.private else "public",
                     "created_at": iso(repo.created), "updated_at": iso(repo.created),
                     "pushed_at": iso(repo.created), "archived": False, "disabled": False, "has_issues": True,
                     "open_issues_count": sum(1 for i in repo.issues.values() if i.state == "open"),
                     "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
                     "clone_url": f"{urls.repo_web(repo)}.git", "git_url": f"git://{urls.web.split('://')[1]}/"
                     f"{repo.full_name}.git", "ssh_url": f"git@{urls.web.split('://')[1]}:{repo.full_name}.git",
                     "svn_url": urls.repo_web(repo), "homepage": None, "language": None, "size": 0,
                     "forks_count": 0, "forks": 0, "stargazers_count": 0, "watchers_count": 0, "watchers": 0,
                     "open_issues": sum(1 for i in repo.issues.values() if i.state == "open"),
                     "has_projects": False, "has_wiki": False, "has_pages": False, "has_downloads": True,
                     "has_discussions": False, "is_template": False, "topics": [], "mirror_url": None,
                     "license": None, "allow_forking": False, "web_commit_signoff_required": False})
    return body


_REPO_URLS = {"archive": "{archive_format}{/ref}", "assignees": "assignees{/user}", "blobs": "git/blobs{/sha}",
              "collaborators": "collaborators{/collaborator}", "comments": "comments{/number}",
              "compare": "compare/{base}...{head}", "contents": "contents/{+path}", "contributors": "contributors",
              "downloads": "downloads", "events": "events", "forks": "forks", "git_commits": "git/commits{/sha}",
              "git_refs": "git/refs{/sha}", "git_tags": "git/tags{/sha}", "issue_comment": "issues/comments{/number}",
              "issue_events": "issues/events{/number}", "keys": "keys{/key_id}", "languages": "languages",
              "merges": "merges", "milestones": "milestones{/number}", "releases": "releases{/id}",
              "stargazers": "stargazers", "subscribers": "subscribers", "subscription": "subscription",
              "tags": "tags", "teams": "teams", "trees": "git/trees{/sha}",
              "notifications": "notifications{?since,all,participating}"}


def workflow(urls: Urls, repo: Repo, wf: Workflow) -> dict:
    return {"id": wf.id, "node_id": node_id("Workflow", wf.id), "name": wf.name, "path": wf.path,
            "state": wf.state, "created_at": iso(wf.created), "updated_at": iso(wf.created),
            "url": f"{urls.repo(repo)}/actions/workflows/{wf.id}",
            "html_url": f"{urls.repo_web(repo)}/blob/{repo.default_branch}/{wf.path}",
            "badge_url": f"{urls.repo_web(repo)}/workflows/{wf.name}/badge.svg"}


def head_commit(repo: Repo, sha: str) -> dict:
    commit = repo.commits.get(sha)
    author = {"name": "Octo Cat", "email": "octocat@example.com"}
    return {"id": sha, "tree_id": fake_sha("tree", sha), "message": commit.message if commit else "",
            "timestamp": iso(commit.created if commit else 0), "author": author, "committer": author}


def run(urls: Urls, repo: Repo, r: Run, attempt: Attempt, now: float) -> dict:
    url = f"{urls.repo(repo)}/actions/runs/{r.id}"
    status = attempt.status(now)
    first = r.attempts[0]
    return {
        "id": r.id, "name": r.workflow.name, "node_id": node_id("WorkflowRun", r.id), "head_branch": r.branch,
        "head_sha": r.sha, "path": r.workflow.path, "display_title": r.title, "run_number": r.number,
        "event": r.event, "status": status,
        "conclusion": attempt.conclusion if status == "completed" else None,
        "workflow_id": r.workflow.id, "check_suite_id": r.id + 7,
        "check_suite_node_id": node_id("CheckSuite", r.id + 7),
        "url": url, "html_url": f"{urls.repo_web(repo)}/actions/runs/{r.id}", "pull_requests": [],
        "created_at": iso(first.created), "updated_at": iso(_updated(attempt, status)),
        "actor": user(urls, r.actor), "triggering_actor": user(urls, r.actor), "run_attempt": attempt.number,
        "referenced_workflows": [], "run_started_at": iso(attempt.created),
        "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs",
        "check_suite_url": f"{urls.repo(repo)}/check-suites/{r.id + 7}", "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel", "rerun_url": f"{url}/rerun",
        "previous_attempt_url": f"{url}/attempts/{attempt.number - 1}" if attempt.number > 1 else None,
        "workflow_url": f"{urls.repo(repo)}/actions/workflows/{r.workflow.id}",
        "head_commit": head_commit(repo, r.sha), "repository": repository(urls, repo, full=False),
        "head_repository": repository(urls, repo, full=False)}


def _updated(attempt: Attempt, status: str) -> float:
    if status == "completed":
        return attempt.end or attempt.created
    return attempt.start if status == "in_progress" and attempt.start else attempt.created


def job(urls: Urls, repo: Repo, r: Run, attempt: Attempt, j: Job, now: float) -> dict:
    owner = r.attempts[j.attempt - 1] if j.attempt != attempt.number else attempt
    status, started, completed = actions.job_times(owner, j, now)
    done = status == "completed"
    steps = [{"name": step.name, "status": state, "conclusion": step.conclusion if state == "completed" else None,
              "number": step.number, "started_at": iso(begun), "completed_at": iso(ended)}
             for step, state, begun, ended in actions.step_progress(owner, j, now)]
    on_runner = started is not None and j.conclusion != "skipped"
    return {
        "id": j.id, "run_id": r.id, "workflow_name": r.workflow.name, "head_branch": r.branch,
        "run_url": f"{urls.repo(repo)}/actions/runs/{r.id}", "run_attempt": j.attempt,
        "node_id": node_id("CheckRun", j.id), "head_sha": r.sha, "url": f"{urls.repo(repo)}/actions/jobs/{j.id}",
        "html_url": f"{urls.repo_web(repo)}/actions/runs/{r.id}/job/{j.id}", "status": status,
        "conclusion": j.conclusion if done else None, "created_at": iso(owner.created),
        "started_at": iso(started or owner.created), "completed_at": iso(completed), "name": j.name,
        "steps": steps, "check_run_url": f"{urls.repo(repo)}/check-runs/{j.id}", "labels": ["ubuntu-latest"],
        "runner_id": 2 if on_runner else None, "runner_name": j.runner if on_runner else None,
        "runner_group_id": 1 if on_runner else None,
        "runner_group_name": "GitHub Actions" if on_runner else None}


def check_run(urls: Urls, repo: Repo, r: Run, attempt: Attempt, j: Job, now: float) -> dict:
    data = job(urls, repo, r, attempt, j, now)
    title = None if data["conclusion"] in (None, "success", "skipped") else f"{j.name} failed"
    return {"id": j.id, "head_sha": r.sha, "node_id": data["node_id"], "external_id": str(j.id),
            "url": data["check_run_url"], "html_url": data["html_url"], "details_url": data["html_url"],
            "status": data["status"], "conclusion": data["conclusion"], "started_at": data["started_at"],
            "completed_at": data["completed_at"], "name": j.name,
            "output": {"title": title, "summary": None, "text": None, "annotations_count": 1 if title else 0,
                       "annotations_url": f"{data['check_run_url']}/annotations"},
            "check_suite": {"id": r.id + 7},
            "app": {"id": 15368, "slug": "github-actions", "node_id": node_id("App", 15368),
                    "owner": user(urls, "github"), "name": "GitHub Actions", "description": "",
                    "external_url": "https://help.github.com/en/actions", "html_url": f"{urls.web}/apps/github-actions",
                    "created_at": "2018-07-30T09:30:17Z", "updated_at": "2019-12-10T19:04:12Z",
                    "permissions": {}, "events": []},
            "pull_requests": []}


def label(urls: Urls, repo: Repo, lab: Label) -> dict:
    return {"id": lab.id, "node_id": node_id("Label", lab.id), "url": f"{urls.repo(repo)}/labels/{lab.name}",
            "name": lab.name, "description": lab.description, "color": lab.color, "default": False}


def issue(urls: Urls, repo: Repo, i: Issue) -> dict:
    url = f"{urls.repo(repo)}/issues/{i.number}"
    kind = "pull" if i.pull else "issues"
    body = {"id": i.id, "node_id": node_id("Issue", i.id), "url": url, "repository_url": urls.repo(repo),
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
            "html_url": f"{urls.repo_web(repo)}/{kind}/{i.number}", "number": i.number, "state": i.state,
            "state_reason": i.state_reason, "title": i.title, "body": i.body, "user": user(urls, i.user),
            "labels": [label(urls, repo, lab) for lab in i.labels],
            "assignee": user(urls, i.assignees[0]) if i.assignees else None,
            "assignees": [user(urls, a) for a in i.assignees], "milestone": None, "locked": False,
            "active_lock_reason": None, "comments": len(i.comments), "closed_at": iso(i.closed),
            "created_at": iso(i.created), "updated_at": iso(i.updated), "closed_by": None,
            "author_association": "OWNER", "timeline_url": f"{url}/timeline", "performed_via_github_app": None,
            "reactions": _reactions(f"{url}/reactions")}
    if i.pull:
        pulls = f"{urls.repo(repo)}/pulls/{i.number}"
        web = f"{urls.repo_web(repo)}/pull/{i.number}"
        body["pull_request"] = {"url": pulls, "html_url": web, "diff_url": f"{web}.diff",
                                "patch_url": f"{web}.patch", "merged_at": None}
        body["draft"] = False
    return body


def comment(urls: Urls, repo: Repo, c: Comment) -> dict:
    return {"id": c.id, "node_id": node_id("IssueComment", c.id),
            "url": f"{urls.repo(repo)}/issues/comments/{c.id}",
            "html_url": f"{urls.repo_web(repo)}/issues/{c.number}#issuecomment-{c.id}", "body": c.body,
            "user": user(urls, c.user), "created_at": iso(c.created), "updated_at": iso(c.updated),
            "issue_url": f"{urls.repo(repo)}/issues/{c.number}", "author_association": "OWNER",
            "performed_via_github_app": None,
            "reactions": _reactions(f"{urls.repo(repo)}/issues/comments/{c.id}/reactions")}


def _reactions(url: str) -> dict:
    return {"url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0,
            "rocket": 0, "eyes": 0}


def deployment(urls: Urls, repo: Repo, d: Deployment) -> dict:
    url = f"{urls.repo(repo)}/deployments/{d.id}"
    return {"url": url, "id": d.id, "node_id": node_id("Deployment", d.id), "sha": d.sha, "ref": d.ref,
            "task": d.task, "payload": d.payload, "original_environment": d.environment,
            "environment": d.environment, "description": d.description, "creator": user(urls, d.user),
            "created_at": iso(d.created), "updated_at": iso(d.statuses[-1].created if d.statuses else d.created),
            "statuses_url": f"{url}/statuses", "repository_url": urls.repo(repo),
            "transient_environment": d.transient, "production_environment": d.production,
            "performed_via_github_app": None}


def deployment_status(urls: Urls, repo: Repo, d: Deployment, s: DeploymentStatus) -> dict:
    url = f"{urls.repo(repo)}/deployments/{d.id}"
    return {"url": f"{url}/statuses/{s.id}", "id": s.id, "node_id": node_id("DeploymentStatus", s.id),
            "state": s.state, "creator": user(urls, s.user), "description": s.description,
            "environment": s.environment, "target_url": s.target_url, "log_url": s.log_url,
            "created_at": iso(s.created), "updated_at": iso(s.created), "deployment_url": url,
            "repository_url": urls.repo(repo), "environment_url": s.environment_url,
            "performed_via_github_app": None}


def commit_status(urls: Urls, repo: Repo, s: CommitStatus) -> dict:
    return {"url": f"{urls.repo(repo)}/statuses/{s.sha}", "avatar_url": None, "id": s.id,
            "node_id": node_id("StatusContext", s.id), "state": s.state, "description": s.description,
            "target_url": s.target_url, "context": s.context, "created_at": iso(s.created),
            "updated_at": iso(s.created), "creator": user(urls, s.user)}


def combined_status(urls: Urls, repo: Repo, sha: str, statuses: list[CommitStatus]) -> dict:
    """`pending` with no statuses at all: Actions reports through check runs, not commit statuses."""
    states = {s.state for s in statuses}
    if states & {"error", "failure"}:
        state = "failure"
    elif not statuses or "pending" in states:
        state = "pending"
    else:
        state = "success"
    return {"state": state, "statuses": [commit_status(urls, repo, s) for s in statuses], "sha": sha,
            "total_count": len(statuses), "repository": repository(urls, repo, full=False),
            "commit_url": f"{urls.repo(repo)}/commits/{sha}", "url": f"{urls.repo(repo)}/commits/{sha}/status"}


def commit(urls: Urls, repo: Repo, c: Commit) -> dict:
    author = {"name": "Octo Cat", "email": "octocat@example.com", "date": iso(c.created)}
    return {"sha": c.sha, "node_id": node_id("Commit", int(c.sha[:8], 16)),
            "url": f"{urls.repo(repo)}/commits/{c.sha}", "html_url": f"{urls.repo_web(repo)}/commit/{c.sha}",
            "comments_url": f"{urls.repo(repo)}/commits/{c.sha}/comments",
            "commit": {"url": f"{urls.repo(repo)}/git/commits/{c.sha}", "author": author, "committer": author,
                       "message": c.message, "tree": {"sha": fake_sha("tree", c.sha),
                                                      "url": f"{urls.repo(repo)}/git/trees/{fake_sha('tree', c.sha)}"},
                       "comment_count": 0},
            "author": user(urls, "octocat"), "committer": user(urls, "octocat"),
            "parents": [{"sha": p, "url": f"{urls.repo(repo)}/commits/{p}"} for p in c.parents],
            "files": [], "stats": {"additions": 0, "deletions": 0, "total": 0}}


def branch(urls: Urls, repo: Repo, name: str, sha: str) -> dict:
    return {"name": name, "commit": {"sha": sha, "url": f"{urls.repo(repo)}/commits/{sha}"}, "protected": False}
