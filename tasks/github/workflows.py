"""Workflows: dispatch one (`workflow_dispatch`) and find the run that dispatch started.

Why not "the newest run": a dispatch answers 204 with nothing to say which run it made, and other runs of
the same workflow (a person's `gh workflow run`, a second runbook) can start in the same second. So the
dispatch asks for run details (GitHub answers 200 with the run's id where it supports that), and otherwise
the run is found by the correlation id the dispatch passed, which the workflow's `run-name` shows.
"""
from __future__ import annotations

import datetime as dt
import time

from github import Github
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from plans.ci import RunFacts

from ..calls import TASK_RETRIES, retry_if_transient
from ..errors import PermanentError, TargetNotFound
from .rest import create_once, post, repo_of
from .runs import list_workflow_runs, read_workflow_run

ACTIVE = ("queued", "in_progress", "waiting", "pending", "requested")
FIND_POLL_SECONDS = 0.5


class Dispatch(BaseModel):
    """A dispatched run: its id when the server returned run details, and the correlation id it carries."""
    changed: bool
    dry_run: bool
    workflow: str
    ref: str
    correlation_id: str
    run_id: int | None = None
    run_url: str = ""


@task(name="list_active_runs", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_active_runs(gh: Github, *, repository: str, workflow: str) -> list[RunFacts]:
    """Runs of the workflow that are queued or running (every status GitHub has before `completed`)."""
    found: list[RunFacts] = []
    for status in ("queued", "in_progress", "waiting", "pending", "requested"):
        found += list_workflow_runs.fn(gh, repository=repository, workflow=workflow, status=status)
    return sorted({r.id: r for r in found}.values(), key=lambda r: r.id)


@task(name="dispatch_workflow", cache_policy=NO_CACHE)      # retried inside, looking first: see create_once
def dispatch_workflow(gh: Github, *, repository: str, workflow: str, ref: str, inputs: dict[str, str],
                      correlation_id: str, since: dt.datetime, run_details: bool = True,
                      dry_run: bool = False) -> Dispatch:
    """Dispatch the workflow on `ref` with `inputs` (which carry `correlation_id`). Safe to retry: before a
    retry, a run carrying the correlation id (the earlier try went through) is taken instead of a second one.
    A 422 (a ref that is not a branch or tag, an input the workflow does not declare) is a PermanentError
    naming GitHub's message; PyGithub's `create_dispatch` would return False unless `throw=True`."""
    base = dict(workflow=workflow, ref=ref, correlation_id=correlation_id)
    if dry_run:
        return Dispatch(changed=False, dry_run=True, **base)
    url = f"{repo_of(gh, repository).url}/actions/workflows/{workflow}/dispatches"

    def create() -> Dispatch:
        data = post(gh, url, {"ref": ref, "inputs": inputs, **({"return_run_details": True} if run_details else {})})
        return Dispatch(changed=True, dry_run=False, run_id=data.get("workflow_run_id"),
                        run_url=data.get("html_url") or "", **base)

    def find() -> Dispatch | None:
        earlier = _by_correlation(gh, repository, workflow, correlation_id, since)
        return earlier and Dispatch(changed=True, dry_run=False, run_id=earlier.id, run_url=earlier.html_url, **base)
    try:
        return create_once(create, find)
    except TargetNotFound as exc:
        raise TargetNotFound(f"workflow {workflow} not found in {repository}") from exc
    except PermanentError as exc:
        raise PermanentError(f"GitHub refused to dispatch {workflow} on {ref} in {repository}: {exc}") from exc


@task(name="find_dispatched_run", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def find_dispatched_run(gh: Github, *, repository: str, dispatch: Dispatch, since: dt.datetime,
                        timeout_seconds: float = 60) -> RunFacts:
    """The run a dispatch started: by the id GitHub returned, else by its correlation id in the run's name
    (a dispatched run can take seconds to appear in the list). Never the newest run."""
    if dispatch.run_id is not None:
        return read_workflow_run.fn(gh, repository=repository, run_id=dispatch.run_id)
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = _by_correlation(gh, repository, dispatch.workflow, dispatch.correlation_id, since)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise TargetNotFound(f"no run of {dispatch.workflow} named with correlation id {dispatch.correlation_id} "
                                 f"appeared within {timeout_seconds:.0f}s: the workflow's run-name must include "
                                 "the correlation input")
        time.sleep(FIND_POLL_SECONDS)


def _by_correlation(gh: Github, repository: str, workflow: str, correlation_id: str,
                    since: dt.datetime) -> RunFacts | None:
    runs = list_workflow_runs.fn(gh, repository=repository, workflow=workflow, event="workflow_dispatch",
                                 created_after=since - dt.timedelta(seconds=5))
    return next((r for r in runs if correlation_id in (r.display_title or r.name)), None)
