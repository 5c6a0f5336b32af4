"""GitHub Actions endpoints: workflows, `workflow_dispatch`, runs and their attempts, jobs, logs (a 302 to a
short-lived signed URL), cancel and re-runs. Shapes: the `workflow`, `workflow-run` and `job` schemas of the
OpenAPI description; the dispatch answers 204, or 200 with `workflow_run_id`, `run_url` and `html_url` when
the body asks `return_run_details`."""
from __future__ import annotations

import datetime as dt

from . import actions, render
from .api import Answer, Ctx, GitHubError, invalid, not_found, page, route
from .model import CONCLUSIONS, Attempt, Run, Workflow

RUN_STATUSES = frozenset({"queued", "in_progress", "completed", "requested", "waiting", "pending"})


def _workflow(ctx: Ctx) -> Workflow:
    wf = ctx.repo.workflow(ctx.params["workflow"])
    if wf is None:
        raise not_found()
    return wf


def _run(ctx: Ctx) -> Run:
    text = ctx.params["run"]
    found = ctx.repo.runs.get(int(text)) if text.isdigit() else None
    if found is None or not ctx.gh.visible(found, ctx.now, by_id=True):
        raise not_found()
    return found


def _attempt(ctx: Ctx, run: Run) -> Attempt:
    text = ctx.params.get("attempt")
    if text is None:
        return run.latest
    if not text.isdigit() or not 1 <= int(text) <= len(run.attempts):
        raise not_found()
    return run.attempts[int(text) - 1]


@route("GET", "/repos/{owner}/{repo}/actions/workflows")
def list_workflows(ctx: Ctx) -> Answer:
    repo = ctx.repo
    return page(ctx, [render.workflow(ctx.urls, repo, wf) for wf in repo.workflows.values()], "workflows")


@route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow}")
def get_workflow(ctx: Ctx) -> Answer:
    return Answer(200, render.workflow(ctx.urls, ctx.repo, _workflow(ctx)))


@route("PUT", "/repos/{owner}/{repo}/actions/workflows/{workflow}/disable")
def disable_workflow(ctx: Ctx) -> Answer:
    _workflow(ctx).state = "disabled_manually"
    return Answer(204)


@route("PUT", "/repos/{owner}/{repo}/actions/workflows/{workflow}/enable")
def enable_workflow(ctx: Ctx) -> Answer:
    _workflow(ctx).state = "active"
    return Answer(204)


@route("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches")
def dispatch(ctx: Ctx) -> Answer:
    repo, wf, body = ctx.repo, _workflow(ctx), ctx.json()
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise invalid('Invalid request.\n\n"ref" wasn\'t supplied.')
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise invalid("Invalid request.\n\nFor 'properties/inputs', \"{}\" is not an object.".format(inputs))
    if wf.inputs is None:
        raise invalid("Workflow does not have 'workflow_dispatch' trigger")
    if wf.state != "active":
        raise invalid("Cannot trigger a 'workflow_dispatch' on a disabled workflow")
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    sha = repo.branches.get(name) or repo.tags.get(name)
    if sha is None:                    # a sha is not a ref: GitHub wants a branch or a tag
        raise invalid(f"No ref found for: {ref}")
    filled = _check_inputs(wf, inputs)
    run = ctx.gh.start_run(repo, wf, event="workflow_dispatch", branch=name, sha=sha, actor=ctx.identity.login,
                           inputs=filled, now=ctx.now)
    if body.get("return_run_details") is True:
        url = f"{ctx.urls.repo(repo)}/actions/runs/{run.id}"
        return Answer(200, {"workflow_run_id": run.id, "run_url": url,
                            "html_url": f"{ctx.urls.repo_web(repo)}/actions/runs/{run.id}"})
    return Answer(204)


def _check_inputs(wf: Workflow, inputs: dict) -> dict:
    declared = wf.inputs or {}
    unexpected = sorted(set(inputs) - set(declared))
    if unexpected:
        raise invalid("Unexpected inputs provided: " + "[" + ", ".join(f'"{k}"' for k in unexpected) + "]")
    filled = {}
    for key, spec in declared.items():
        if key not in inputs:
            if spec.required and spec.default is None:
                raise invalid(f"Required input '{key}' not provided")
            if spec.default is not None:
                filled[key] = spec.default
            continue
        value = inputs[key]
        if not isinstance(value, (str, bool, int, float)):
            raise invalid(f"Invalid request.\n\nFor 'properties/{key}', {value!r} is not a string.")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if spec.type == "choice" and text not in spec.options:
            raise invalid(f"Provided value '{text}' for input '{key}' not in the list of allowed values")
        if spec.type == "boolean" and text not in ("true", "false"):
            raise invalid(f"Provided value '{text}' for input '{key}' is not a valid boolean")
        filled[key] = text
    return filled


def _runs(ctx: Ctx, runs: list[Run]) -> Answer:
    q = ctx.request.query
    chosen = []
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        if not ctx.gh.visible(run, ctx.now):
            continue
        attempt = run.latest
        status = attempt.status(ctx.now)
        wanted = q.get("status")
        if wanted and wanted not in (status, attempt.conclusion if status == "completed" else None):
            continue
        if any(q.get(k) and q[k] != v for k, v in (("branch", run.branch), ("event", run.event),
                                                   ("actor", run.actor), ("head_sha", run.sha))):
            continue
        if q.get("created") and not _created_matches(q["created"], run.attempts[0].created):
            continue
        chosen.append(render.run(ctx.urls, ctx.repo, run, attempt, ctx.now))
    status = q.get("status")
    if status and status not in RUN_STATUSES and status not in CONCLUSIONS and status != "stale":
        raise invalid(f"Invalid status: {status}")
    return page(ctx, chosen, "workflow_runs")


def _created_matches(spec: str, created: float) -> bool:
    """GitHub's date-range syntax for `created`: `>=D`, `<=D`, `>D`, `<D`, `D..D` or a date."""
    def when(text: str) -> float:
        text = text.strip()
        if len(text) == 10:
            text += "T00:00:00Z"
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    try:
        if ".." in spec:
            low, high = spec.split("..", 1)
            return (low in ("", "*") or created >= when(low)) and (high in ("", "*") or created <= when(high))
        for op in (">=", "<=", ">", "<"):
            if spec.startswith(op):
                bound = when(spec[len(op):])
                return {">=": created >= bound, "<=": created <= bound, ">": created > bound, "<": created < bound}[op]
        day = when(spec[:10])
        return day <= created < day + 86400
    except ValueError:
        raise invalid(f"Invalid created: {spec}") from None


@route("GET", "/repos/{owner}/{repo}/actions/runs")
def list_runs(ctx: Ctx) -> Answer:
    return _runs(ctx, list(ctx.repo.runs.values()))


@route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow}/runs")
def list_workflow_runs(ctx: Ctx) -> Answer:
    wf = _workflow(ctx)
    return _runs(ctx, [r for r in ctx.repo.runs.values() if r.workflow is wf])


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}")
@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/attempts/{attempt}")
def get_run(ctx: Ctx) -> Answer:
    run = _run(ctx)
    return Answer(200, render.run(ctx.urls, ctx.repo, run, _attempt(ctx, run), ctx.now))


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/timing")
def run_timing(ctx: Ctx) -> Answer:
    """Billable time per runner OS and the run's duration (`run_duration_ms` once it has completed)."""
    run = _run(ctx)
    attempt = run.latest
    done = attempt.status(ctx.now) == "completed"
    spans = []
    for job in attempt.jobs:
        _, started, completed = actions.job_times(attempt, job, ctx.now)
        if started is not None and job.conclusion != "skipped":
            spans.append((job.id, int(((completed or ctx.now) - started) * 1000)))
    body = {"billable": {"UBUNTU": {"total_ms": sum(ms for _, ms in spans), "jobs": len(spans),
                                    "job_runs": [{"job_id": i, "duration_ms": ms} for i, ms in spans]}}}
    if done:
        body["run_duration_ms"] = int(((attempt.end or attempt.created) - attempt.created) * 1000)
    return Answer(200, body)


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/jobs")
@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/attempts/{attempt}/jobs")
def list_jobs(ctx: Ctx) -> Answer:
    run = _run(ctx)
    which = ctx.query("filter", "latest")
    if which not in ("latest", "all"):
        raise invalid(f"Invalid filter: {which}")
    if "attempt" in ctx.params or which == "latest":
        attempt = _attempt(ctx, run)
        pairs = [(attempt, job) for job in attempt.jobs]
    else:
        seen, pairs = set(), []
        for attempt in reversed(run.attempts):
            for job in attempt.jobs:
                if job.id not in seen:
                    seen.add(job.id)
                    pairs.append((attempt, job))
    return page(ctx, [render.job(ctx.urls, ctx.repo, run, a, j, ctx.now) for a, j in pairs], "jobs")


def find_job(ctx: Ctx) -> tuple[Run, Attempt, object]:
    text = ctx.params["job"]
    for run in ctx.repo.runs.values():
        for attempt in reversed(run.attempts):
            for job in attempt.jobs:
                if str(job.id) == text and job.attempt == attempt.number:
                    return run, attempt, job
    raise not_found()


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job}")
def get_job(ctx: Ctx) -> Answer:
    run, attempt, job = find_job(ctx)
    return Answer(200, render.job(ctx.urls, ctx.repo, run, attempt, job, ctx.now))


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job}/logs")
def job_logs(ctx: Ctx) -> Answer:
    run, attempt, job = find_job(ctx)
    if attempt.status(ctx.now) == "queued":
        raise not_found()
    return Answer(302, None, {"Location": ctx.gh.blobs.job_log_url(ctx.repo, run, attempt, job)})


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/logs")
@route("GET", "/repos/{owner}/{repo}/actions/runs/{run}/attempts/{attempt}/logs")
def run_logs(ctx: Ctx) -> Answer:
    run = _run(ctx)
    attempt = _attempt(ctx, run)
    if attempt.status(ctx.now) != "completed":
        raise not_found()
    return Answer(302, None, {"Location": ctx.gh.blobs.run_logs_url(ctx.repo, run, attempt)})


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run}/cancel")
def cancel_run(ctx: Ctx) -> Answer:
    actions.cancel(_run(ctx), ctx.now)
    return Answer(202, {})


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run}/force-cancel")
def force_cancel_run(ctx: Ctx) -> Answer:
    actions.cancel(_run(ctx), ctx.now)
    return Answer(202, {})


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run}/rerun")
def rerun(ctx: Ctx) -> Answer:
    actions.rerun(_run(ctx), ctx.gh.timing, ctx.now, failed_only=False)
    return Answer(201, {})


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run}/rerun-failed-jobs")
def rerun_failed(ctx: Ctx) -> Answer:
    actions.rerun(_run(ctx), ctx.gh.timing, ctx.now, failed_only=True)
    return Answer(201, {})


@route("DELETE", "/repos/{owner}/{repo}/actions/runs/{run}")
def delete_run(ctx: Ctx) -> Answer:
    run = _run(ctx)
    if run.latest.status(ctx.now) != "completed":
        raise GitHubError(409, "Cannot delete a workflow run that is not completed.")
    del ctx.repo.runs[run.id]
    return Answer(204)
