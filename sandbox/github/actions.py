"""GitHub Actions as the stand-in plays it: a run is created queued, starts after `queue_seconds` and completes
after `run_seconds` (simulated, `speed` times faster) with the conclusion its `Outcome` chose. Status is read
off the clock when asked, so nothing runs in the background. Re-runs add attempts to the same run; cancel ends
the current attempt at once."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..common.errors import HttpError
from .model import FAILED, NO_JOBS, Attempt, Job, Outcome, Run, Step, Workflow, next_id


@dataclass
class Timing:
    """Simulated seconds a run spends queued and running; `speed` makes them pass faster."""

    speed: float = 1.0
    queue_seconds: float = 2.0
    run_seconds: float = 30.0

    def after(self, start: float, seconds: float) -> float:
        return start + seconds / self.speed


def plan_attempt(number: int, workflow: Workflow, outcome: Outcome, timing: Timing, *, now: float,
                 keep: list[Job] = ()) -> Attempt:
    """An attempt starting now. `keep`: the earlier attempt's jobs a "re-run failed jobs" does not re-run."""
    outcome = outcome.for_attempt(number)
    start = None if outcome.stuck else timing.after(now, timing.queue_seconds)
    end = None if outcome.stuck or outcome.hold else timing.after(start, timing.run_seconds)
    if outcome.conclusion in NO_JOBS:         # GitHub never got as far as jobs: the run ends at once
        return Attempt(number, now, now, now, outcome, [], outcome.conclusion)
    kept = {job.name: job for job in keep}
    jobs = [kept.get(spec.name) or _job(spec.name, spec.steps, spec.skipped, number, outcome, workflow)
            for spec in workflow.jobs]
    return Attempt(number, now, start, end, outcome, jobs, _conclusion(jobs))


def _failing_job(workflow: Workflow, outcome: Outcome) -> str | None:
    if outcome.conclusion not in FAILED:
        return None
    if outcome.job is not None:
        return outcome.job
    running = [spec.name for spec in workflow.jobs if not spec.skipped]
    return running[-1] if running else None


def _job(name: str, steps: tuple[str, ...], skipped: bool, attempt: int, outcome: Outcome,
         workflow: Workflow) -> Job:
    if skipped:
        return Job(next_id(), name, attempt, "skipped", [])
    if _failing_job(workflow, outcome) != name:
        conclusion = "success" if outcome.conclusion in FAILED else outcome.conclusion
        return Job(next_id(), name, attempt, conclusion, [Step(s, i, conclusion) for i, s in enumerate(steps, 1)])
    failing = outcome.step or next((s for s in reversed(steps) if s != "Complete job"), steps[-1])
    if failing not in steps:
        raise ValueError(f"job {name!r} has no step {failing!r}; its steps: {list(steps)}")
    step_conclusion = "failure" if outcome.conclusion == "failure" else "cancelled"
    built, reached = [], False
    for i, step in enumerate(steps, 1):
        if step == failing:
            built.append(Step(step, i, step_conclusion))
            reached = True
        elif not reached or step == "Complete job":
            built.append(Step(step, i, "success"))
        else:
            built.append(Step(step, i, "skipped"))
    return Job(next_id(), name, attempt, outcome.conclusion, built, outcome.log, failing, error=outcome.error)


def _conclusion(jobs: list[Job]) -> str:
    """The run's conclusion from its jobs: the first failed one's, else skipped when every job was, else success."""
    for job in jobs:
        if job.conclusion in FAILED or job.conclusion in ("neutral", "action_required"):
            return job.conclusion
    if jobs and all(job.conclusion == "skipped" for job in jobs):
        return "skipped"
    return "success"


def new_run(workflow: Workflow, *, run_id: int, number: int, event: str, branch: str, sha: str, actor: str,
            inputs: dict, outcome: Outcome, timing: Timing, now: float, commit_message: str = "") -> Run:
    """A run; its `display_title` is the run-name, else the workflow's name for a dispatch and the head commit's
    first line for a push (as GitHub titles them)."""
    title = workflow.title(inputs)
    if not workflow.run_name and event != "workflow_dispatch" and commit_message:
        title = commit_message.splitlines()[0]
    run = Run(run_id, workflow, number, event, branch, sha, title, actor, inputs)
    run.attempts.append(plan_attempt(1, workflow, outcome, timing, now=now))
    return run


def cancel(run: Run, now: float) -> None:
    """End the current attempt now, cancelled (409 when it has completed already)."""
    attempt = run.latest
    if attempt.status(now) == "completed":
        raise HttpError(409, "Conflict", "Cannot cancel a workflow run that is completed.")
    attempt.cancelled = True
    attempt.end = now
    attempt.conclusion = "cancelled"
    for job in attempt.jobs:
        if job.attempt == attempt.number and job.conclusion != "skipped":
            job.conclusion = "cancelled"
            for step in job.steps:
                step.conclusion = "cancelled" if step.conclusion != "skipped" else "skipped"


def rerun(run: Run, timing: Timing, now: float, *, failed_only: bool) -> Attempt:
    """A new attempt of the same run (same id, `run_attempt` + 1). With `failed_only`, jobs that did not fail
    keep their earlier results; GitHub refuses either while the run has not completed (403)."""
    if run.latest.status(now) != "completed":
        raise HttpError(403, "Forbidden", "This workflow is already running")
    if failed_only and run.latest.conclusion not in FAILED:
        raise HttpError(403, "Forbidden", "This workflow run cannot be retried")
    keep = [job for job in run.latest.jobs if job.conclusion not in FAILED] if failed_only else []
    attempt = plan_attempt(len(run.attempts) + 1, run.workflow, run.attempts[0].outcome, timing, now=now, keep=keep)
    run.attempts.append(attempt)
    return attempt


def release(run: Run, now: float, *, start_only: bool = False) -> None:
    """Let a stuck run start (`start_only`) or a held or stuck one complete now (test steering)."""
    attempt = run.latest
    if attempt.status(now) == "completed":
        return
    if attempt.start is None or attempt.start > now:
        attempt.start = now
    if not start_only:
        attempt.end = now


def job_times(attempt: Attempt, job: Job, now: float) -> tuple[str, float | None, float | None]:
    """(status, started, completed) of a job: the attempt's, or the earlier attempt's for a kept job."""
    status = attempt.status(now)
    if job.conclusion == "skipped" and status == "completed":
        return "completed", attempt.end, attempt.end
    start = attempt.start if attempt.start is not None and now >= attempt.start else None
    return status, start, attempt.end if status == "completed" else None


def step_progress(attempt: Attempt, job: Job, now: float) -> list[tuple[Step, str, float | None, float | None]]:
    """(step, status, started, completed) for each step: the job's time is shared evenly among its steps, so a
    running job has finished some; a held run waits in its outcome's `step` (else its first)."""
    status, started, completed = job_times(attempt, job, now)
    if started is None:                               # not started yet, or cancelled while queued
        return [(step, "completed" if status == "completed" else "queued", None, None) for step in job.steps]
    end = completed if status == "completed" else attempt.end
    if end is None:                                   # held: it hangs in one step
        names = [step.name for step in job.steps]
        at = names.index(attempt.outcome.step) if attempt.outcome.step in names else 0
        return [(step, "completed" if i < at else "in_progress" if i == at else "queued",
                 started if i <= at else None, started if i < at else None) for i, step in enumerate(job.steps)]
    share = (end - started) / max(len(job.steps), 1)
    progress = []
    for i, step in enumerate(job.steps):
        begins, ends = started + i * share, started + (i + 1) * share
        state = "completed" if status == "completed" or now >= ends else "in_progress" if now >= begins else "queued"
        progress.append((step, state, begins if state != "queued" else None, ends if state == "completed" else None))
    return progress


def job_log(run: Run, attempt: Attempt, job: Job, now: float) -> str:
    """The job's log as Actions writes it, as far as it has run: a timestamp on every line, a group per step,
    `##[error]` where it failed."""
    lines: list[tuple[float, str]] = []
    for step, state, started, _ in step_progress(attempt, job, now):
        if state == "queued" or step.conclusion == "skipped" and state == "completed":
            continue
        lines += [(started or now, line) for line in _step_lines(run, job, step.name)]
        if step.name == job.failed_step and state == "completed":
            lines += [(started or now, line) for line in [*job.log, _error_line(job)]]
    return "".join(f"{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime(at))} {line}\n" for at, line in lines)


def _step_lines(run: Run, job: Job, name: str) -> list[str]:
    """What a step prints: the runner's preamble for "Set up job", a group with the command for a `run:` or
    `uses:` step, the clean-up for "Complete job"."""
    if name == "Set up job":
        return ["Current runner version: '2.321.0'", f"Runner name: '{job.runner}'",
                "Requested labels: ubuntu-latest", f"Job defined at: {run.workflow.path}@refs/heads/{run.branch}"]
    if name == "Complete job":
        return ["Cleaning up orphan processes"]
    command = name.removeprefix("Run ")
    return [f"##[group]Run {command}", command, "##[endgroup]"]


def _error_line(job: Job) -> str:
    if job.error:
        return f"##[error]{job.error}"
    if job.conclusion == "timed_out":
        return (f"##[error]The job running on runner {job.runner} has exceeded the maximum execution time of "
                f"360 minutes.")
    if job.conclusion == "cancelled":
        return "##[error]The operation was canceled."
    return "##[error]Process completed with exit code 1."
