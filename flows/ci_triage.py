"""Runbook: CI Failure Triage. Sort a repository's failed and stuck GitHub Actions runs and act on each.

Purpose: CI is red or a pipeline is stuck. Find the failed and stuck workflow runs of a repository (optionally
of one workflow, branch or run), read each failed job's log for the failing step and the lines that explain
it, tell infrastructure (runner lost, timeout, startup_failure, cancelled) from flaky (passes when its failed
jobs are re-run once, where the catalog allows a re-run) from real failures, and leave one issue per failure.
Approval required: none for re-runs and issues; the environment's policy before a stuck run is cancelled and
dispatched again.
Estimated time: 15 to 30 minutes by hand; a few minutes as a runbook (most of it waiting for re-runs).
Prerequisites: a service of the environment names the repository (`github_repo`, with `github:` settings for
its workflows, re-runs and stuck limit); the environment has a `github:` connection with credentials (a
Secret block or GITHUB_TOKEN); no other triage of the repository is running.
Blast radius: one repository's workflow runs and issues; no code, branch or deployment is touched.
Procedure: preflight (list the runs, read the failed jobs and their logs, the open `ci-failure` issues; a dry
run stops at the plan with zero writes), re-run the failed jobs of each flaky candidate once and wait for the
attempt, then per failure signature open an issue (failing step, log lines, links) or comment on the open
one, never a duplicate; if a run is stuck in the queue past the limit, ask for approval, cancel it and dispatch
its workflow again on the same branch.
Verification: every re-run attempt completed, every real failure is on an issue, every stuck run is cancelled
and its new run exists.
Rollback: a dispatched run is cancelled again; re-runs, cancellations and issues are records of what
happened and are not undone.
Post-incident: the run report lists each failure's classification, the issues opened or commented, and the
runs re-run, cancelled and dispatched.
"""
from __future__ import annotations

import datetime as dt

from github import Github

from flows.ci_steps import (ci_settings, dispatch_again, find_runs, inspect_failures, reported_already,
                            stuck_in_queue)
from flows.kernel import Runbook, runbook_flow
from plans.ci import Failure, RunFacts, after_rerun
from plans.ci_triage import (LABEL, RUNBOOK, IssueAction, TriagePlan, comment_body, issue_body, issue_change,
                             issue_groups, issue_title, plan_triage, run_marker, signature_marker)
from plans.plan import Change
from plans.record import Check, RunRecord
from plans.trigger import AlertContext
from tasks.github.issues import comment_issue, open_issue
from tasks.github.runs import cancel_workflow_run, read_workflow_run, rerun_failed_jobs, wait_for_run
from tasks.github.workflows import Dispatch

NO_UNDO_RERUN = "a re-run cannot be taken back; it only repeats the failed jobs once"
NO_UNDO_ISSUE = "an issue records a failure that happened; closing it would hide it"
NO_UNDO_CANCEL = "a cancelled run cannot be resumed; the next step dispatches it again"


@runbook_flow(name=RUNBOOK, description="CI Failure Triage: classify failed and stuck GitHub Actions runs, re-run "
                                        "flaky jobs once, file one issue per failure.")
def ci_failure_triage(environment: str, repository: str, requested_by: str, reason: str = "", workflow: str = "",
                      branch: str = "", run_id: int | None = None, since_hours: int = 24,
                      rerun_timeout_minutes: int = 30, dry_run: bool = False,
                      alert: AlertContext | None = None) -> RunRecord:
    """CI Failure Triage: classify a repository's failed and stuck runs, re-run flaky jobs once, file issues.

    Args:
        environment: Environment from the catalog whose services name the repository. Required.
        repository: The repository, owner/name, as a catalog service's github_repo names it.
        requested_by: Who asks for this run (your name, or github:webhook). They may not approve it.
        reason: Why: the red build, the stuck pipeline, the webhook delivery.
        workflow: Only this workflow file (e.g. ci.yml). Default: the catalog's CI workflows (all if none).
        branch: Only runs of this branch.
        run_id: Only this run (a webhook names it), plus the stuck-run check.
        since_hours: How far back to look for failed runs.
        rerun_timeout_minutes: How long to wait for a re-run attempt to complete.
        dry_run: Plan only: publish the classification and the plan, change nothing.
        alert: Set by the receiver for a webhook-started run; leave empty by hand.
    """
    with Runbook(RUNBOOK, environment=environment, requested_by=requested_by, reason=reason, dry_run=dry_run,
                 alert=alert) as run:
        # 1. Preflight (read-only): the repository, its failed and stuck runs, their jobs and logs, open issues.
        target, services = run.catalog.repository_target(environment, repository)
        settings = ci_settings(run.catalog.environment(environment), services, workflow)
        run.guard(target, cooldown=False)
        gh, now = run.github, dt.datetime.now(dt.timezone.utc)
        runs = find_runs(gh, repository=repository, settings=settings, branch=branch, run_id=run_id,
                         since=now - dt.timedelta(hours=since_hours))
        failures = inspect_failures(gh, repository=repository, runs=runs, rerun_allowed=settings.rerun_flaky)
        stuck = stuck_in_queue(gh, repository=repository, settings=settings, branch=branch, now=now)
        failures, existing = reported_already(gh, repository=repository, failures=failures)
        run.before({"failed jobs": len(failures), "stuck runs": [r.id for r in stuck]},
                   f"{len(runs)} run(s) looked at, {len(failures)} new failed job(s), {len(stuck)} stuck run(s)")

        # 2. Plan: classification, re-runs, issues, stuck runs. A dry run or nothing to do ends here.
        triage = plan_triage(target, failures, stuck, existing, stuck_after_minutes=settings.stuck_after_minutes)
        if run.stop_after_plan(triage.plan):
            return run.record

        # 3. Procedure: re-run each flaky candidate's failed jobs once, then classify it by that attempt.
        for failure in triage.reruns:
            run.apply(_change(triage, failure.run_id, "failed jobs"), lambda f=failure: rerun_failed_jobs(
                gh, repository=repository, run_id=f.run_id, expected_attempt=1), no_undo=NO_UNDO_RERUN)
        reruns = {f.run_id: wait_for_run(gh, repository=repository, run_id=f.run_id, min_attempt=2,
                                         timeout_seconds=rerun_timeout_minutes * 60) for f in triage.reruns}
        failures = [after_rerun(f, reruns[f.run_id]) if f.kind == "rerun" else f for f in failures]
        failures = [f for f in failures if f.kind != "rerun" or not reruns[f.run_id].failed] + inspect_failures(
            gh, repository=repository, runs=[r for r in reruns.values() if r.failed], rerun_allowed=False)

        # 4. One issue per failure signature: open it, or comment on the open one.
        actions = [IssueAction(signature=s, failures=group, number=existing.get(s, (None, ""))[0])
                   for s, group in issue_groups(failures, kinds=("failure",)).items()]
        for action in actions:
            _file(run, triage, gh, repository, action)

        # 5. Stuck runs, behind approval: cancel each, then dispatch its workflow again on the same branch.
        if triage.stuck:
            run.approve()
        dispatched = [_unstick(run, triage, gh, repository, stuck_run) for stuck_run in triage.stuck]

        # 6. Verification: re-runs completed, real failures on issues, stuck runs replaced.
        run.verify(lambda: _checks(reruns, failures, actions, dispatched, run.environment.github.run_details))
        run.after({"flaky": [f.run_id for f in failures if f.kind == "flaky"],
                   "issues": [a.number for a in actions]})
    return run.record


def _change(triage: TriagePlan, run_id: int | str, field: str) -> Change:
    return next(c for c in triage.plan.changes if c.resource.startswith(f"workflow run {run_id} ") and c.field == field)


def _file(run: Runbook, triage: TriagePlan, gh: Github, repository: str, action: IssueAction) -> None:
    change = next((c for c in triage.plan.changes if c.field == f"signature {action.signature}"), None) or \
        issue_change(action.failures[0], action.number)       # a re-run that failed differently
    mark = run_marker(action.failures[0])
    if action.number is None:
        result = run.apply(change, lambda: open_issue(
            gh, repository=repository, title=issue_title(action.failures[0]), label=LABEL,
            body=issue_body(action.signature, action.failures), mark=signature_marker(action.signature)),
            no_undo=NO_UNDO_ISSUE)
    else:
        result = run.apply(change, lambda: comment_issue(
            gh, repository=repository, number=action.number, body=f"{mark}\n" + comment_body(action.failures),
            mark=mark), no_undo=NO_UNDO_ISSUE)
    action.number, action.url = result.number, result.url
    run.evidence(f"issue #{result.number} ({result.action}): {result.url}")


def _unstick(run: Runbook, triage: TriagePlan, gh: Github, repository: str, stuck_run: RunFacts) -> Dispatch:
    change = _change(triage, stuck_run.id, "status")
    run.apply(change.model_copy(update={"after": "cancelled"}), lambda: cancel_workflow_run(
        gh, repository=repository, run_id=stuck_run.id), no_undo=NO_UNDO_CANCEL)
    dispatched = run.apply(change, lambda: dispatch_again(gh, repository=repository, stuck=stuck_run,
                                                          run_details=run.environment.github.run_details),
                           undo=lambda d: d.run_id and cancel_workflow_run(gh, repository=repository, run_id=d.run_id),
                           undo_text=f"cancel the run dispatched again for {stuck_run.id}",
                           verify_undo=lambda d: [_ended(read_workflow_run(gh, repository=repository, run_id=d.run_id))]
                           if d.run_id else [])
    run.evidence(f"stuck run {stuck_run.id} cancelled; dispatched again as run {dispatched.run_id} "
                 f"({dispatched.run_url})")
    return dispatched


def _ended(again: RunFacts) -> Check:
    return Check(name=f"run {again.id} ended", passed=again.status == "completed",
                 detail=f"{again.status} {again.conclusion or ''}".strip())


def _checks(reruns: dict[int, RunFacts], failures: list[Failure], actions: list[IssueAction],
            dispatched: list[Dispatch], ids_expected: bool) -> list[Check]:
    checks = [Check(name=f"re-run of {r.id}", passed=r.status == "completed",
                    detail=f"attempt {r.run_attempt}: {r.status} {r.conclusion or ''}".strip()) for r in reruns.values()]
    filed = {f.signature for a in actions if a.number for f in a.failures}
    missing = [f for f in failures if f.kind == "failure" and f.signature not in filed]
    checks.append(Check(name="failures on issues", passed=not missing,
                        detail=f"{len(filed)} signature(s) filed" + (f"; missing: {missing}" if missing else "")))
    if dispatched:
        unknown = [d.correlation_id for d in dispatched if d.run_id is None]
        checks.append(Check(name="stuck runs replaced", passed=not unknown or not ids_expected,
                            detail=f"{len(dispatched)} dispatched again" + (
                                f"; the server returned no run id for {unknown}" if unknown else "")))
    return checks
