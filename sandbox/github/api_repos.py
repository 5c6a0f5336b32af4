"""Repositories, branches, commits, commit statuses, check runs and deployments (with their statuses), shaped
after the OpenAPI description's `repository`, `commit`, `status`, `combined-commit-status`, `check-run`,
`deployment` and `deployment-status`. Actions reports through check runs, so a commit only Actions has looked
at has a `pending` combined status with no statuses."""
from __future__ import annotations

from . import render
from .api import Answer, Ctx, GitHubError, invalid, missing_field, not_found, page, route
from .model import CommitStatus, Deployment, DeploymentStatus, next_id

STATUS_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")


@route("GET", "")
def root(ctx: Ctx) -> Answer:
    api = ctx.urls.api
    return Answer(200, {"current_user_url": f"{api}/user", "rate_limit_url": f"{api}/rate_limit",
                        "repository_url": f"{api}/repos/{{owner}}/{{repo}}"})


@route("GET", "/user")
def current_user(ctx: Ctx) -> Answer:
    if ctx.identity.kind != "user":
        raise GitHubError(403, "Resource not accessible by integration")
    return Answer(200, render.user(ctx.urls, ctx.identity.login))


@route("GET", "/rate_limit")
def rate_limit(ctx: Ctx) -> Answer:
    return Answer(200, ctx.gh.rate_limits.overview(ctx.identity.key))


@route("GET", "/repos/{owner}/{repo}")
def get_repo(ctx: Ctx) -> Answer:
    return Answer(200, render.repository(ctx.urls, ctx.repo))


@route("GET", "/repos/{owner}/{repo}/branches")
def list_branches(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [render.branch(ctx.urls, repo, n, s) for n, s in sorted(repo.branches.items())])


@route("GET", "/repos/{owner}/{repo}/branches/{branch}")
def get_branch(ctx: Ctx) -> Answer:
    repo = ctx.repo
    sha = repo.branches.get(ctx.params["branch"])
    if sha is None:
        raise GitHubError(404, "Branch not found")
    return Answer(200, render.branch(ctx.urls, repo, ctx.params["branch"], sha))


@route("GET", "/repos/{owner}/{repo}/tags")
def list_tags(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [{"name": n, "commit": {"sha": s, "url": f"{ctx.urls.repo(repo)}/commits/{s}"},
                       "zipball_url": f"{ctx.urls.repo(repo)}/zipball/refs/tags/{n}",
                       "tarball_url": f"{ctx.urls.repo(repo)}/tarball/refs/tags/{n}",
                       "node_id": render.node_id("Ref", len(n))} for n, s in sorted(repo.tags.items())])


@route("GET", "/repos/{owner}/{repo}/git/ref/{kind}/{name}")
def get_ref(ctx: Ctx) -> Answer:
    repo, kind, name = ctx.repo, ctx.params["kind"], ctx.params["name"]
    refs = {"heads": repo.branches, "tags": repo.tags}.get(kind, {})
    if name not in refs:
        raise not_found()
    sha = refs[name]
    return Answer(200, {"ref": f"refs/{kind}/{name}", "node_id": render.node_id("Ref", len(name)),
                        "url": f"{ctx.urls.repo(repo)}/git/refs/{kind}/{name}",
                        "object": {"type": "commit", "sha": sha, "url": f"{ctx.urls.repo(repo)}/git/commits/{sha}"}})


def _sha(ctx: Ctx) -> str:
    sha = ctx.repo.resolve(ctx.params["ref"])
    if sha is None:
        raise invalid(f"No commit found for SHA: {ctx.params['ref']}")
    return sha


@route("GET", "/repos/{owner}/{repo}/commits/{ref}")
def get_commit(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return Answer(200, render.commit(ctx.urls, repo, repo.commits[_sha(ctx)]))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/status")
def combined_status(ctx: Ctx) -> Answer:
    repo, sha = ctx.repo, _sha(ctx)
    latest: dict[str, CommitStatus] = {}
    for status in repo.statuses:
        if status.sha == sha:
            latest[status.context] = status
    return Answer(200, render.combined_status(ctx.urls, repo, sha, list(latest.values())))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses")
def list_statuses(ctx: Ctx) -> Answer:
    repo, sha = ctx.repo, _sha(ctx)
    found = [render.commit_status(ctx.urls, repo, s) for s in reversed(repo.statuses) if s.sha == sha]
    return page(ctx, found)


@route("POST", "/repos/{owner}/{repo}/statuses/{ref}")
def create_status(ctx: Ctx) -> Answer:
    repo, body = ctx.repo, ctx.json()
    sha = repo.resolve(ctx.params["ref"])
    if sha is None:
        raise invalid(f"No commit found for SHA: {ctx.params['ref']}")
    if body.get("state") not in STATUS_STATES:
        raise invalid("Validation Failed", [{"resource": "Status", "code": "custom", "field": "state",
                                             "message": "state is not included in the list"}])
    status = CommitStatus(next_id(), sha, body["state"], body.get("context") or "default", body.get("description"),
                          body.get("target_url"), ctx.identity.login, ctx.now)
    repo.statuses.append(status)
    return Answer(201, render.commit_status(ctx.urls, repo, status))


def _check_runs(ctx: Ctx, sha: str) -> list[dict]:
    found = []
    for run in sorted(ctx.repo.runs.values(), key=lambda r: r.id, reverse=True):
        if run.sha != sha:
            continue
        for attempt in reversed(run.attempts):
            for job in attempt.jobs:
                if job.attempt == attempt.number:
                    found.append(render.check_run(ctx.urls, ctx.repo, run, attempt, job, ctx.now))
    return found


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
def list_check_runs(ctx: Ctx) -> Answer:
    found = _check_runs(ctx, _sha(ctx))
    for key in ("check_name", "status"):
        wanted = ctx.query(key)
        if wanted:
            found = [c for c in found if c["name" if key == "check_name" else "status"] == wanted]
    if ctx.query("filter", "latest") == "latest":
        seen, latest = set(), []
        for check in found:
            if check["name"] not in seen:
                seen.add(check["name"])
                latest.append(check)
        found = latest
    return page(ctx, found, "check_runs")


@route("GET", "/repos/{owner}/{repo}/check-runs/{check}")
def get_check_run(ctx: Ctx) -> Answer:
    for run in ctx.repo.runs.values():
        for attempt in run.attempts:
            for job in attempt.jobs:
                if str(job.id) == ctx.params["check"] and job.attempt == attempt.number:
                    return Answer(200, render.check_run(ctx.urls, ctx.repo, run, attempt, job, ctx.now))
    raise not_found()


# -- deployments -----------------------------------------------------------------------------------

def _deployment(ctx: Ctx) -> Deployment:
    text = ctx.params["deployment"]
    found = ctx.repo.deployments.get(int(text)) if text.isdigit() else None
    if found is None:
        raise not_found()
    return found


@route("GET", "/repos/{owner}/{repo}/deployments")
def list_deployments(ctx: Ctx) -> Answer:
    repo, q = ctx.repo, ctx.request.query
    found = [d for d in sorted(repo.deployments.values(), key=lambda d: d.id, reverse=True)
             if all(not q.get(k) or q[k] == getattr(d, k) for k in ("sha", "ref", "task", "environment"))]
    return page(ctx, [render.deployment(ctx.urls, repo, d) for d in found])


@route("GET", "/repos/{owner}/{repo}/deployments/{deployment}")
def get_deployment(ctx: Ctx) -> Answer:
    return Answer(200, render.deployment(ctx.urls, ctx.repo, _deployment(ctx)))


@route("POST", "/repos/{owner}/{repo}/deployments")
def create_deployment(ctx: Ctx) -> Answer:
    repo, body = ctx.repo, ctx.json()
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise missing_field("Deployment", "ref")
    sha = repo.resolve(ref)
    if sha is None:
        raise invalid(f"No ref found for: {ref}")
    _check_contexts(ctx, sha, ref, body.get("required_contexts"))
    environment = body.get("environment") or "production"
    deployment = Deployment(next_id(), sha, ref, body.get("task") or "deploy", body.get("payload") or {},
                            environment, body.get("description"), ctx.identity.login, ctx.now,
                            bool(body.get("transient_environment", False)),
                            bool(body.get("production_environment", environment == "production")))
    repo.deployments[deployment.id] = deployment
    return Answer(201, render.deployment(ctx.urls, repo, deployment))


def _check_contexts(ctx: Ctx, sha: str, ref: str, required: object) -> None:
    """GitHub verifies the commit's contexts (commit statuses and check runs) before it deploys: all of them when
    `required_contexts` is left out, those named otherwise, none for `[]`. 409 when one has not succeeded."""
    contexts: dict[str, str] = {}
    for status in ctx.repo.statuses:
        if status.sha == sha:
            contexts[status.context] = status.state
    for check in sorted(_check_runs(ctx, sha), key=lambda c: c["id"]):   # oldest first: the latest of a name wins
        contexts[check["name"]] = check["conclusion"] or check["status"]
    if required is None:
        wanted = list(contexts)
    elif isinstance(required, list) and all(isinstance(c, str) for c in required):
        wanted = required
    else:
        raise invalid("Invalid request.\n\nFor 'properties/required_contexts', value is not an array.")
    states = [{"context": name, "state": contexts.get(name, "pending")} for name in wanted]
    if any(s["state"] not in ("success", "neutral", "skipped") for s in states):
        raise GitHubError(409, f"Conflict: Commit status checks failed for {ref}.",
                          errors=[{"resource": "Deployment", "field": "required_contexts", "code": "invalid",
                                   "contexts": states}])


@route("DELETE", "/repos/{owner}/{repo}/deployments/{deployment}")
def delete_deployment(ctx: Ctx) -> Answer:
    deployment = _deployment(ctx)
    if deployment.statuses and deployment.statuses[-1].state != "inactive":
        raise invalid("We cannot delete an active deployment unless it is the only deployment in a given "
                      "environment.")
    del ctx.repo.deployments[deployment.id]
    return Answer(204)


@route("GET", "/repos/{owner}/{repo}/deployments/{deployment}/statuses")
def list_deployment_statuses(ctx: Ctx) -> Answer:
    d = _deployment(ctx)
    return page(ctx, [render.deployment_status(ctx.urls, ctx.repo, d, s) for s in reversed(d.statuses)])


@route("GET", "/repos/{owner}/{repo}/deployments/{deployment}/statuses/{status}")
def get_deployment_status(ctx: Ctx) -> Answer:
    d = _deployment(ctx)
    for s in d.statuses:
        if str(s.id) == ctx.params["status"]:
            return Answer(200, render.deployment_status(ctx.urls, ctx.repo, d, s))
    raise not_found()


@route("POST", "/repos/{owner}/{repo}/deployments/{deployment}/statuses")
def create_deployment_status(ctx: Ctx) -> Answer:
    repo, d, body = ctx.repo, _deployment(ctx), ctx.json()
    state = body.get("state")
    if state not in DEPLOYMENT_STATES:
        raise invalid("Validation Failed", [{"resource": "DeploymentStatus", "code": "custom", "field": "state",
                                             "message": "state is not included in the list"}])
    environment = body.get("environment") or d.environment
    status = DeploymentStatus(next_id(), state, body.get("description") or "", environment,
                              body.get("target_url") or "", body.get("log_url") or body.get("target_url") or "",
                              body.get("environment_url") or "", ctx.identity.login, ctx.now)
    d.statuses.append(status)
    if state == "success" and body.get("auto_inactive", True) and not d.transient:
        _deactivate_others(ctx, d, environment)
    return Answer(201, render.deployment_status(ctx.urls, repo, d, status))


def _deactivate_others(ctx: Ctx, current: Deployment, environment: str) -> None:
    """`auto_inactive`: earlier successful deployments to the environment get an `inactive` status."""
    for other in ctx.repo.deployments.values():
        if other is current or other.environment != environment or not other.statuses:
            continue
        if other.statuses[-1].state == "success":
            other.statuses.append(DeploymentStatus(next_id(), "inactive", "", environment, "", "", "",
                                                   ctx.identity.login, ctx.now))
