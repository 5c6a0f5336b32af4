"""GitHub Actions workflow runs and their jobs: list, read, job logs, re-run failed jobs, cancel, wait.

Reads first, then the mutating actions, which take `dry_run`. Every call goes through `tasks.calls.call`
(the taxonomy, rate limits waited out up to a cap, retries in the run's log). The client is lazy: knowing a
repository's name is enough to build every URL under it, so no call is spent opening it. Facts are built from
the JSON the server sent (PyGithub's `_rawData`), so reading them never triggers a completing GET.
"""
from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request

from github import Github
from github.PaginatedList import PaginatedList
from github.WorkflowJob import WorkflowJob
from github.WorkflowRun import WorkflowRun
from prefect import task
from pydantic import BaseModel

from plans.ci import JobFacts, RunFacts, StepFacts

from ..calls import TASK_RETRIES, call, retry_if_transient
from ..errors import ConflictError, RunbookError, TransientError
from .rest import get, post, repo_of

MAX_LOG_BYTES = 2 << 20
PER_PAGE = 100
POLL_SECONDS = (0.25, 1.5, 5.0)       # first wait, growth, longest: a quick first look, then patience


class RunAction(BaseModel):
    """What a re-run or cancel did; `changed` is False when the run was already in the asked-for state."""
    changed: bool
    dry_run: bool
    run_id: int
    run_attempt: int
    detail: str = ""


def run_url(gh: Github, repository: str, run_id: int) -> str:
    return f"{repo_of(gh, repository).url}/actions/runs/{run_id}"


def run_facts(run: WorkflowRun | dict) -> RunFacts:
    raw = run if isinstance(run, dict) else run._rawData
    return RunFacts(id=raw["id"], name=raw.get("name") or "", display_title=raw.get("display_title") or "",
                    workflow_id=raw.get("workflow_id") or 0, path=raw.get("path") or "",
                    head_branch=raw.get("head_branch"), head_sha=raw.get("head_sha") or "", event=raw.get("event") or "",
                    status=raw.get("status") or "", conclusion=raw.get("conclusion"),
                    run_attempt=raw.get("run_attempt") or 1, created_at=raw["created_at"],
                    html_url=raw.get("html_url") or "")


def job_facts(job: WorkflowJob) -> JobFacts:
    raw = job._rawData
    return JobFacts(id=raw["id"], name=raw.get("name") or "", status=raw.get("status") or "",
                    conclusion=raw.get("conclusion"), html_url=raw.get("html_url") or "",
                    steps=[StepFacts(name=s.get("name") or "", number=s.get("number") or 0,
                                     conclusion=s.get("conclusion")) for s in raw.get("steps") or []])


@task(name="list_workflow_runs", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_workflow_runs(gh: Github, *, repository: str, status: str | None = None, workflow: str | None = None,
                       branch: str | None = None, event: str | None = None, created_after: dt.datetime | None = None,
                       limit: int = 1000) -> list[RunFacts]:
    """Runs of the repository (or of one workflow file), newest first, every page (100 a page). `status` is
    GitHub's filter: a status (queued, in_progress, completed) or a conclusion (failure, timed_out, ...)."""
    created = created_after and f">={created_after.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    params = {k: v for k, v in {"status": status, "branch": branch, "event": event, "created": created,
                                "per_page": PER_PAGE}.items() if v}
    base = repo_of(gh, repository).url
    url = f"{base}/actions/workflows/{workflow}/runs" if workflow else f"{base}/actions/runs"

    def fetch() -> list[RunFacts]:
        found = []
        for run in PaginatedList(WorkflowRun, gh.requester, url, params, list_item="workflow_runs"):
            found.append(run_facts(run))
            if len(found) >= limit:
                break
        return found
    return call(fetch)


@task(name="read_workflow_run", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_workflow_run(gh: Github, *, repository: str, run_id: int) -> RunFacts:
    return call(lambda: run_facts(get(gh, run_url(gh, repository, run_id))[0]))


@task(name="list_run_jobs", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_run_jobs(gh: Github, *, repository: str, run_id: int) -> list[JobFacts]:
    """The jobs of the run's latest attempt (kept jobs of a partial re-run included, as GitHub lists them)."""
    def fetch() -> list[JobFacts]:
        url = run_url(gh, repository, run_id)
        run = WorkflowRun(gh.requester, {}, {"url": url, "jobs_url": f"{url}/jobs", "id": run_id}, completed=False)
        return [job_facts(job) for job in run.jobs()]
    return call(fetch)


@task(name="read_job_log", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def read_job_log(gh: Github, *, repository: str, job_id: int) -> str:
    """A job's log (its last MAX_LOG_BYTES: the error is at the end). GitHub answers 302 to a signed,
    short-lived URL that is fetched without the token (sending it there would leak it to the blob store)."""
    def fetch() -> str:
        job = WorkflowJob(gh.requester, {}, {"url": f"{repo_of(gh, repository).url}/actions/jobs/{job_id}",
                                             "id": job_id}, completed=False)
        location = job.logs_url()
        request = urllib.request.Request(location, headers={"User-Agent": "runbooks"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:     # noqa: S310 - URL from GitHub
                data = b""
                while chunk := response.read(1 << 16):
                    data = (data + chunk)[-MAX_LOG_BYTES:]
                return data.decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404, 410):       # the signed URL expired: ask GitHub for a fresh one
                raise TransientError(f"job {job_id} log URL answered {exc.code}") from exc
            raise
    return call(fetch)


@task(name="rerun_failed_jobs", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def rerun_failed_jobs(gh: Github, *, repository: str, run_id: int, expected_attempt: int,
                      dry_run: bool = False) -> RunAction:
    """Re-run the failed jobs of a completed run: a new attempt of the same run (same id, `run_attempt` + 1).
    Idempotent: when the run is already past `expected_attempt` (a retried request that did go through),
    nothing is sent."""
    current = read_workflow_run.fn(gh, repository=repository, run_id=run_id)
    if current.run_attempt > expected_attempt or dry_run:
        return _unchanged(current, dry_run, f"already at attempt {current.run_attempt}" if not dry_run else "")
    try:
        call(post, gh, f"{run_url(gh, repository, run_id)}/rerun-failed-jobs")
    except RunbookError:        # a retried POST whose first try went through is refused: look before failing
        if read_workflow_run.fn(gh, repository=repository, run_id=run_id).run_attempt <= expected_attempt:
            raise
    return RunAction(changed=True, dry_run=False, run_id=run_id, run_attempt=expected_attempt + 1)


@task(name="cancel_workflow_run", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def cancel_workflow_run(gh: Github, *, repository: str, run_id: int, dry_run: bool = False) -> RunAction:
    """Cancel a queued or running run. Idempotent: a completed run is left alone (GitHub would answer 409)."""
    current = read_workflow_run.fn(gh, repository=repository, run_id=run_id)
    if current.status == "completed" or dry_run:
        return _unchanged(current, dry_run, f"already completed ({current.conclusion})" if not dry_run else "")
    try:
        call(post, gh, f"{run_url(gh, repository, run_id)}/cancel")
    except ConflictError:               # it completed between the read and the cancel
        return _unchanged(current, False, "completed before the cancel")
    return RunAction(changed=True, dry_run=False, run_id=run_id, run_attempt=current.run_attempt)


def _unchanged(run: RunFacts, dry_run: bool, detail: str) -> RunAction:
    return RunAction(changed=False, dry_run=dry_run, run_id=run.id, run_attempt=run.run_attempt, detail=detail)


@task(name="wait_for_run", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def wait_for_run(gh: Github, *, repository: str, run_id: int, timeout_seconds: float,
                 min_attempt: int = 1) -> RunFacts:
    """Poll the run until its attempt `min_attempt` (or later) completes, or the deadline passes (the run as
    last seen; the caller decides). GitHub has no watch, so each poll is a conditional request: an unchanged
    run answers 304, which costs no rate limit."""
    url = run_url(gh, repository, run_id)
    data, etag = call(get, gh, url)
    deadline = time.monotonic() + timeout_seconds
    pause, growth, longest = POLL_SECONDS
    while True:
        facts = run_facts(data)
        if facts.status == "completed" and facts.run_attempt >= min_attempt:
            return facts
        if time.monotonic() >= deadline:
            return facts
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(longest, pause * growth)
        changed, etag = call(get, gh, url, etag)
        data = changed or data
