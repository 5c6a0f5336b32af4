"""The CI triage plan, pure: which failed runs to re-run once, which stuck runs to cancel and dispatch again,
and which failure signatures get a new issue or a comment on their open one; plus the issue's text.

One issue per signature: the issue's body carries the signature's marker, and each run it reports carries a
run marker, so a failure reported once is never reported again (a scheduled triage sees it on every pass).
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from .ci import Failure, RunFacts
from .plan import Change, Plan
from .targets import RepositoryTarget

RUNBOOK = "ci-failure-triage"
LABEL = "ci-failure"


def signature_marker(signature: str) -> str:
    return f"<!-- runbooks:ci-failure:{signature} -->"


def run_marker(failure: Failure) -> str:
    return f"<!-- runbooks:ci-run:{failure.run_id}:{failure.job} -->"


class IssueAction(BaseModel):
    """What triage does for one signature: `open` a new issue, or `comment` on `number`."""
    signature: str
    failures: list[Failure]
    number: int | None = None
    url: str = ""

    @property
    def action(self) -> str:
        return "comment" if self.number is not None else "open"


class TriagePlan(BaseModel):
    plan: Plan
    reruns: list[Failure] = Field(default_factory=list)
    stuck: list[RunFacts] = Field(default_factory=list)
    infrastructure: list[Failure] = Field(default_factory=list)


def plan_triage(target: RepositoryTarget, failures: list[Failure], stuck: list[RunFacts],
                existing: dict[str, tuple[int, str]], *, stuck_after_minutes: int) -> TriagePlan:
    """`existing`: signature -> (open issue number, url). Failures already reported are left out by the caller."""
    reruns = list({f.run_id: f for f in failures if f.kind == "rerun"}.values())
    changes = [Change(resource=f"workflow run {f.run_id} ({f.workflow})", field="failed jobs",
                      before="failed on attempt 1", after="re-run once") for f in reruns]
    for signature, group in issue_groups(failures).items():
        changes.append(issue_change(group[0], existing.get(signature, (None, ""))[0],
                                    conditional=all(f.kind == "rerun" for f in group)))
    changes += [Change(resource=f"workflow run {r.id} ({r.workflow_file})", field="status",
                       before=f"{r.status} since {r.created_at:%Y-%m-%d %H:%M}Z",
                       after=f"cancelled, dispatched again on {r.head_branch}") for r in stuck]
    infrastructure = [f for f in failures if f.kind == "infrastructure"]
    evidence = [f"{f.kind}: run {f.run_id} {f.workflow} / {f.job} / {f.step or '?'}: {f.reason}" for f in failures]
    evidence += [f"stuck: run {r.id} {r.workflow_file} queued more than {stuck_after_minutes} min" for r in stuck]
    summary = (f"{len(failures)} failed job(s) in {target.repository}: {len(reruns)} run(s) to re-run once, "
               f"{len(infrastructure)} infrastructure, {len(stuck)} stuck run(s) to cancel and dispatch again")
    plan = Plan(runbook=RUNBOOK, target=target, summary=summary, changes=changes, evidence=evidence,
                noop_reason=None if changes else "no new failure and no stuck run")
    return TriagePlan(plan=plan, reruns=reruns, stuck=stuck, infrastructure=infrastructure)


def issue_groups(failures: list[Failure], kinds: tuple[str, ...] = ("failure", "rerun")) -> dict[str, list[Failure]]:
    """Failures that need an issue, by signature: real ones (and, when planning, those whose re-run may fail)."""
    groups: dict[str, list[Failure]] = {}
    for failure in failures:
        if failure.kind in kinds:
            groups.setdefault(failure.signature, []).append(failure)
    return groups


def issue_change(failure: Failure, number: int | None, *, conditional: bool = False) -> Change:
    when = " if the re-run fails" if conditional else ""
    return Change(resource=f"issue for {failure.workflow} / {failure.job} / {failure.step or '?'}",
                  field=f"signature {failure.signature}", before=f"#{number} open" if number else "no issue",
                  after=(f"comment{when}" if number else f"open{when}"))


def issue_title(failure: Failure) -> str:
    return f"CI failure: {failure.workflow} / {failure.job} / {failure.step or 'unknown step'}"


def failure_text(failure: Failure) -> str:
    """One failure as markdown: where, why, and the log lines that explain it."""
    lines = "\n".join(failure.lines) or "(the log had no lines before the error)"
    return (f"{run_marker(failure)}\n**Run**: [{failure.run_id}]({failure.run_url}) on `{failure.branch}`  \n"
            f"**Job**: [{failure.job}]({failure.job_url})  \n**Failing step**: {failure.step or 'unknown'}  \n"
            f"**Classification**: {failure.kind}: {failure.reason}\n\n```text\n{lines}\n```\n")


def issue_body(signature: str, failures: list[Failure]) -> str:
    return (f"{signature_marker(signature)}\nOpened by the `{RUNBOOK}` runbook: the same failure (signature "
            f"`{signature}`) is reported here as a comment each time it happens again.\n\n"
            + "\n".join(failure_text(f) for f in failures))


def comment_body(failures: list[Failure]) -> str:
    return "The same failure happened again.\n\n" + "\n".join(failure_text(f) for f in failures)
