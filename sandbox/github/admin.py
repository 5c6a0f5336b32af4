"""The GitHub stand-in's own `/_sandbox/github/...` endpoints, so a test or demo in another process can seed
and steer it over HTTP as in-process tests do through its methods (never logged, never faulted):

    POST /_sandbox/github/repos        {"full_name", "default_branch"?, "branches"?, "tags"?}
    POST /_sandbox/github/workflows    {"repo", "file", "name"?, "jobs"?, "inputs"?, "dispatch"?, "run_name"?,
                                        "outcome"?}
    POST /_sandbox/github/outcomes     {"repo", "workflow", "outcome": {...}, "every"?: false}   (next run's)
    POST /_sandbox/github/runs         {"repo", "workflow", "outcome"?, "event"?, "branch"?, "age"?}
    POST /_sandbox/github/runs/{id}/begin | /finish
    POST /_sandbox/github/hooks        {"repo", "url", "secret"?, "events"?}    (a loopback URL)
    POST /_sandbox/github/hooks/{id}/redeliver   {"repo", "delivery"}
    POST /_sandbox/github/lost-answers {"verb", "path", "status", "times"}   (the write happens, the answer is
                                        an error);  DELETE clears
    POST /_sandbox/github/rate-limit   {"primary": {"reset_in", "status"}} or {"secondary": {"retry_after",
                                        "times", "status"}};  DELETE resets

An outcome is `Outcome`'s fields: {"conclusion", "job", "step", "log", "flaky", "stuck", "hold"}; a job is a
name or {"name", "steps", "skipped"}; an input is `WorkflowInput`'s fields."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..common.errors import HttpError
from .model import JobSpec, Outcome

if TYPE_CHECKING:
    from ..common.http import Request
    from .server import GitHubSandbox

PREFIX = "/_sandbox/github/"


def handle(gh: "GitHubSandbox", request: "Request") -> tuple[int, Any] | None:
    path = request.path.rstrip("/")
    if not path.startswith(PREFIX):
        return None
    what = path[len(PREFIX):]
    try:
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict):
            raise TypeError("the body must be a JSON object")
        return _dispatch(gh, request.method, what, body)
    except (ValueError, TypeError, KeyError) as exc:
        raise HttpError(400, "BadRequest", f"{request.method} {path}: {exc}") from None


def _outcome(spec: dict | None) -> Outcome | None:
    return Outcome(**spec) if spec else None


def _dispatch(gh: "GitHubSandbox", method: str, what: str, body: dict) -> tuple[int, Any] | None:
    if (method, what) == ("POST", "repos"):
        repo = gh.add_repo(body["full_name"], default_branch=body.get("default_branch", "main"),
                           branches=body.get("branches", ()), tags=body.get("tags", ()))
        return 201, {"full_name": repo.full_name, "id": repo.id}
    if (method, what) == ("POST", "workflows"):
        jobs = [JobSpec(j["name"], tuple(j.get("steps") or JobSpec(j["name"]).steps), bool(j.get("skipped")))
                if isinstance(j, dict) else j for j in body.get("jobs", ("build", "test"))]
        wf = gh.add_workflow(body["repo"], body["file"], name=body.get("name"), jobs=jobs, inputs=body.get("inputs"),
                             dispatch=body.get("dispatch", True), run_name=body.get("run_name"),
                             outcome=_outcome(body.get("outcome")))
        return 201, {"id": wf.id, "path": wf.path}
    if (method, what) == ("POST", "outcomes"):
        chosen = _outcome(body["outcome"]) or Outcome()
        (gh.set_outcome if body.get("every") else gh.next_outcome)(body["repo"], body["workflow"], chosen)
        return 201, {"queued": True}
    if (method, what) == ("POST", "runs"):
        run = gh.add_run(body["repo"], body["workflow"], _outcome(body.get("outcome")), event=body.get("event", "push"),
                         branch=body.get("branch"), age=float(body.get("age", 0)))
        return 201, {"id": run.id}
    if method == "POST" and what.startswith("runs/") and what.count("/") == 2:
        _, run_id, action = what.split("/")
        if action not in ("begin", "finish"):
            return None
        (gh.begin if action == "begin" else gh.finish)(int(run_id))
        status, conclusion = gh.run_status(int(run_id))
        return 200, {"status": status, "conclusion": conclusion}
    if (method, what) == ("POST", "hooks"):
        hook = gh.add_hook(body["repo"], body["url"], secret=body.get("secret"),
                           events=body.get("events", ("workflow_run",)))
        return 201, {"id": hook.id}
    if method == "POST" and what.startswith("hooks/") and what.endswith("/redeliver"):
        again = gh.redeliver(body["repo"], int(what.split("/")[1]), int(body["delivery"]))
        return 201, {"id": again.id, "guid": again.guid, "status_code": again.status_code}
    if what == "lost-answers" and method in ("POST", "DELETE"):
        if method == "DELETE":
            gh.lost_answers.clear()
            return 200, {"cleared": True}
        return 201, gh.lost_answers.add(**body).as_dict()
    if what == "rate-limit":
        return _rate_limit(gh, method, body)
    return None


def _rate_limit(gh: "GitHubSandbox", method: str, body: dict) -> tuple[int, Any] | None:
    if method == "DELETE":
        gh.rate_limits.reset()
        return 200, {"cleared": True}
    if method != "POST":
        return None
    if "primary" in body:
        gh.rate_limits.exhaust(**body["primary"])
    if "secondary" in body:
        gh.rate_limits.secondary(**body["secondary"])
    return 201, {"armed": sorted(k for k in body if k in ("primary", "secondary"))}
