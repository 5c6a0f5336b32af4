"""CI failure triage, pure: GitHub Actions runs and jobs as typed facts, what a failed job's log says, how a
failure is classified, its signature (one issue per signature), and which runs are stuck in the queue.

Why classify before acting: a runner that vanished, a job that hit its time limit, a run GitHub never
started (`startup_failure`: a broken workflow file, no jobs) or one someone cancelled says nothing about
the code, so it gets no issue about the code; a failure that passes when its failed jobs are re-run once
is flaky; anything else is a real failure. `conclusion` is null until `status` is completed, and a
skipped job (its `if:` was false) is not a failure.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Literal

from pydantic import BaseModel, Field

FAILED_CONCLUSIONS = frozenset({"failure", "timed_out", "startup_failure", "cancelled"})
QUEUED_STATUSES = frozenset({"queued", "waiting", "pending", "requested"})
INFRASTRUCTURE_CONCLUSIONS = {"timed_out": "timed out", "startup_failure": "never started (startup_failure)",
                              "cancelled": "cancelled"}
RUNNER_LOST = ("lost communication with the server", "runner has received a shutdown signal",
               "the runner has received a shutdown signal", "self-hosted runner lost", "runner lost")
MAX_LINES = 12
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ?")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GENERIC = re.compile(r"^(Process completed with exit code \d+\.?|Error: Process completed with exit code \d+\.?)$")
_VOLATILE = re.compile(r"\b[0-9a-f]{7,40}\b|(?<![A-Za-z_])\d+(\.\d+)?")   # not the digits in test_case_2

Kind = Literal["infrastructure", "flaky", "failure", "rerun"]


class StepFacts(BaseModel):
    name: str
    number: int
    conclusion: str | None = None


class JobFacts(BaseModel):
    """A job of one attempt, as `GET .../runs/{id}/jobs` returns it."""
    id: int
    name: str
    status: str
    conclusion: str | None = None
    steps: list[StepFacts] = Field(default_factory=list)
    html_url: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "completed" and self.conclusion in FAILED_CONCLUSIONS


class RunFacts(BaseModel):
    """A workflow run (its latest attempt), as `GET .../actions/runs` returns it."""
    id: int
    name: str = ""
    display_title: str = ""
    workflow_id: int
    path: str = Field("", description="the workflow file, e.g. .github/workflows/ci.yml")
    head_branch: str | None = None
    head_sha: str = ""
    event: str = ""
    status: str
    conclusion: str | None = None
    run_attempt: int = 1
    created_at: dt.datetime
    html_url: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "completed" and self.conclusion in FAILED_CONCLUSIONS

    @property
    def workflow_file(self) -> str:
        return self.path.rsplit("/", 1)[-1].split("@", 1)[0]


class LogExcerpt(BaseModel):
    """What explains a failed job: the step that failed and the log lines leading to its error."""
    step: str | None
    lines: list[str]
    runner_lost: bool = False


class Failure(BaseModel):
    """One failed job of one run, classified, with the signature its issue is keyed by."""
    run_id: int
    run_url: str
    workflow: str
    branch: str | None
    job: str
    job_url: str
    step: str | None
    lines: list[str]
    kind: Kind
    reason: str
    signature: str


def stuck_runs(runs: list[RunFacts], *, now: dt.datetime, limit: dt.timedelta) -> list[RunFacts]:
    """Runs still waiting in the queue `limit` after they were created (no runner picked them up)."""
    return [r for r in runs if r.status in QUEUED_STATUSES and now - r.created_at > limit]


def analyse_log(job: JobFacts, log: str) -> LogExcerpt:
    """The failing step (from the job's steps, else the log's last group) and the lines before its error."""
    step = next((s.name for s in job.steps if s.conclusion in ("failure", "timed_out", "cancelled")), None)
    lines = [_ANSI.sub("", _STAMP.sub("", raw)).rstrip() for raw in log.splitlines()]
    lost = any(marker in line.lower() for line in lines for marker in RUNNER_LOST)
    section: list[str] = []
    group = None
    for line in lines:
        if line.startswith("##[group]"):
            section, group = [], line.removeprefix("##[group]")
        elif line.startswith("##[endgroup]"):
            continue
        elif line.startswith("##[error]"):
            section.append(line.removeprefix("##[error]"))
            step = step or (group.removeprefix("Run ") if group else None)
            return LogExcerpt(step=step, lines=[s for s in section if s.strip()][-MAX_LINES:], runner_lost=lost)
        else:
            section.append(line)
    return LogExcerpt(step=step, lines=[s for s in section if s.strip()][-MAX_LINES:], runner_lost=lost)


def signature(*, repository: str, workflow: str, job: str, step: str | None, lines: list[str]) -> str:
    """The same failure twice has the same signature: numbers, hashes and timestamps are masked, so a
    failure that prints a different duration or commit each time still maps to one issue."""
    error = next((line for line in reversed(lines) if line.strip() and not _GENERIC.match(line.strip())), "")
    text = "|".join([repository, workflow, job, step or "", _VOLATILE.sub("#", error)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def classify(run: RunFacts, job: JobFacts | None, excerpt: LogExcerpt, *, rerun_allowed: bool,
             rerun_passed: bool | None = None) -> tuple[Kind, str]:
    """(kind, why). `rerun_passed`: None before a re-run, else whether the re-run attempt succeeded."""
    conclusion = (job.conclusion if job else None) or run.conclusion or ""
    if run.conclusion == "startup_failure":
        return "infrastructure", "the run never started (startup_failure): check the workflow file and permissions"
    if excerpt.runner_lost:
        return "infrastructure", "the runner was lost (shutdown signal or lost communication)"
    if conclusion in INFRASTRUCTURE_CONCLUSIONS:
        return "infrastructure", f"the job {INFRASTRUCTURE_CONCLUSIONS[conclusion]}"
    if rerun_passed is True:
        return "flaky", f"passed when its failed jobs were re-run (attempt {run.run_attempt})"
    if rerun_passed is False:
        return "failure", f"failed again when its failed jobs were re-run (attempt {run.run_attempt})"
    if run.run_attempt > 1:
        return "failure", f"failed on attempt {run.run_attempt}, after a re-run"
    if rerun_allowed:
        return "rerun", "re-run its failed jobs once to tell a flaky failure from a real one"
    return "failure", "failed (the catalog does not allow a re-run to check for flakiness)"


def failure_of(repository: str, run: RunFacts, job: JobFacts | None, excerpt: LogExcerpt, *,
               rerun_allowed: bool, rerun_passed: bool | None = None) -> Failure:
    kind, reason = classify(run, job, excerpt, rerun_allowed=rerun_allowed, rerun_passed=rerun_passed)
    name = job.name if job else "(no jobs)"
    return Failure(run_id=run.id, run_url=run.html_url, workflow=run.workflow_file, branch=run.head_branch,
                   job=name, job_url=job.html_url if job else run.html_url, step=excerpt.step, lines=excerpt.lines,
                   kind=kind, reason=reason,
                   signature=signature(repository=repository, workflow=run.workflow_file, job=name,
                                       step=excerpt.step, lines=excerpt.lines))


def after_rerun(failure: Failure, rerun: RunFacts) -> Failure:
    """A flaky candidate once its re-run attempt is known: passed -> flaky. A failed re-run is inspected
    again from the new attempt's jobs (its log may differ); one still running stays a candidate."""
    if rerun.status == "completed" and rerun.conclusion == "success":
        return failure.model_copy(update={"kind": "flaky", "reason": f"passed when its failed jobs were re-run "
                                                                      f"(attempt {rerun.run_attempt})"})
    return failure


def merge_settings(settings: list, workflow: str) -> tuple[tuple[str, ...], bool, int]:
    """(workflows, rerun allowed, stuck limit in minutes) for a repository several services may name: the
    union of their CI workflows (or the one asked for), a re-run only when every one allows it, the
    shortest stuck limit."""
    workflows = (workflow,) if workflow else tuple(sorted({w for s in settings for w in s.ci_workflows}))
    rerun = bool(settings) and all(s.rerun_flaky for s in settings)
    return workflows, rerun, min((s.stuck_after_minutes for s in settings), default=30)
