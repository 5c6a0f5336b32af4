"""The steps of CI triage that read GitHub, each a few tasks in a row: which runs failed, what each failed job's
log says, which runs are stuck, which failures are reported already, and dispatching a stuck run again."""
from __future__ import annotations

import datetime as dt
import re

from github import Github
from pydantic import BaseModel

from plans.ci import Failure, LogExcerpt, RunFacts, analyse_log, failure_of, merge_settings, stuck_runs
from plans.ci_triage import LABEL, run_marker
from tasks.catalog import Environment
from tasks.github.issues import list_issue_texts
from tasks.github.runs import list_run_jobs, list_workflow_runs, read_job_log, read_workflow_run
from tasks.github.workflows import Dispatch, dispatch_workflow

_SIGNATURE = re.compile(r"<!-- runbooks:ci-failure:([0-9a-f]+) -->")


class CiSettings(BaseModel):
    workflows: tuple[str, ...]
    rerun_flaky: bool
    stuck_after_minutes: int


def ci_settings(environment: Environment, services: list[str], workflow: str) -> CiSettings:
    github = [environment.services[s].github for s in services if environment.services[s].github]
    workflows, rerun, stuck = merge_settings(github, workflow)
    return CiSettings(workflows=workflows, rerun_flaky=rerun, stuck_after_minutes=stuck)


def _list(gh: Github, repository: str, settings: CiSettings, **filters) -> list[RunFacts]:
    if not settings.workflows:
        return list_workflow_runs(gh, repository=repository, **filters)
    return [r for w in settings.workflows for r in list_workflow_runs(gh, repository=repository, workflow=w, **filters)]


def find_runs(gh: Github, *, repository: str, settings: CiSettings, branch: str, run_id: int | None,
              since: dt.datetime) -> list[RunFacts]:
    """Failed runs: the one asked for, or the completed runs created since `since` that failed."""
    if run_id is not None:
        runs = [read_workflow_run(gh, repository=repository, run_id=run_id)]
    else:
        runs = _list(gh, repository, settings, status="completed", branch=branch or None, created_after=since)
    return [r for r in runs if r.failed]


def inspect_failures(gh: Github, *, repository: str, runs: list[RunFacts], rerun_allowed: bool) -> list[Failure]:
    """Each failed job of each run, with its failing step and log lines, classified. A run that never
    started (startup_failure) has no jobs: it is one failure of its own."""
    failures = []
    for run in runs:
        jobs = [] if run.conclusion == "startup_failure" else [
            j for j in list_run_jobs(gh, repository=repository, run_id=run.id) if j.failed]
        if not jobs:
            failures.append(failure_of(repository, run, None, LogExcerpt(step=None, lines=[]), rerun_allowed=rerun_allowed))
        for job in jobs:
            excerpt = analyse_log(job, read_job_log(gh, repository=repository, job_id=job.id))
            failures.append(failure_of(repository, run, job, excerpt, rerun_allowed=rerun_allowed))
    return failures


def stuck_in_queue(gh: Github, *, repository: str, settings: CiSettings, branch: str,
                   now: dt.datetime) -> list[RunFacts]:
    queued = _list(gh, repository, settings, status="queued", branch=branch or None)
    return stuck_runs(queued, now=now, limit=dt.timedelta(minutes=settings.stuck_after_minutes))


def reported_already(gh: Github, *, repository: str, failures: list[Failure]
                     ) -> tuple[list[Failure], dict[str, tuple[int, str]]]:
    """(failures not reported yet, signature -> (open issue, url)). An issue's body and comments carry the
    marker of each run they report, so a scheduled triage never reports one failure twice."""
    existing: dict[str, tuple[int, str]] = {}
    texts: dict[int, str] = {}
    for issue in list_issue_texts(gh, repository=repository, label=LABEL,
                                  with_comments=lambda body: bool(_SIGNATURE.search(body)) and any(
                                      f.signature in body for f in failures)):
        found = _SIGNATURE.search(issue.body)
        if found:
            existing.setdefault(found.group(1), (issue.number, issue.url))
            texts[issue.number] = issue.body + "\n".join(issue.comments)
    fresh = [f for f in failures if f.signature not in existing
             or run_marker(f) not in texts[existing[f.signature][0]]]
    return fresh, existing


def dispatch_again(gh: Github, *, repository: str, stuck: RunFacts, run_details: bool) -> Dispatch:
    """Dispatch a stuck run's workflow again on its branch (after it was cancelled)."""
    return dispatch_workflow(gh, repository=repository, workflow=stuck.workflow_file, ref=stuck.head_branch or "",
                             inputs={}, correlation_id=f"redispatch-{stuck.id}", since=dt.datetime.now(dt.timezone.utc),
                             run_details=run_details)
