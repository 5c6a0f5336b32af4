"""Planning an emergency rollback: pure decisions on typed state, tested without a cluster.

Why the decision rests on evidence, not on pod health: the most common bad release passes its readiness
probe and serves errors ("500s after deploy"), so "the pods look healthy" cannot mean "nothing to do".
Instead:

- A run started by hand rolls back the current revision, even when its pods look healthy (the plan
  says so, and the gate shows it), unless the current revision is itself the result of a rollback: then
  it is a no-op that says so, and `target_revision` goes further back.
- A run started by an alert treats the revision that was current when the alert began firing as the bad
  one, and is a no-op when a newer revision has rolled out since: an alert that fires twice must not undo
  the fix.
- No run ever rolls back *to* a revision that a rollback rolled away from.

Revision history comes from the ReplicaSets: a revision number is assigned each time a template becomes
current, and a ReplicaSet that becomes current again keeps its old numbers in `revision-history`.
"""
from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from tasks.errors import PermanentError, TargetNotFound

from .kubernetes import (DeploymentState, PodState, Revision, describe_images, readiness_by_revision,
                         rollback_annotations, rollout_status, without_hash)
from .plan import Change, Plan, PlanningError
from .targets import DeploymentTarget
from .trigger import Trigger

RUNBOOK = "emergency-rollback"


class RollbackDecision(BaseModel):
    plan: Plan
    to_revision: Revision | None = None     # None when there is nothing to do
    template: dict | None = None
    annotations: dict[str, str] | None = None


class History(BaseModel):
    """What the ReplicaSets say about the Deployment's past."""
    by_number: dict[int, Revision]          # every number ever assigned that a ReplicaSet still remembers
    current: Revision | None
    rolled_away: dict[str, int]             # ReplicaSet name -> the revision number that rolled back from it

    @property
    def current_is_rollback(self) -> bool:
        return self.current is not None and len(self.current.numbers) > 1


def read_history(state: DeploymentState, revisions: list[Revision]) -> History:
    by_number = {n: r for r in revisions for n in r.numbers}
    current = next((r for r in revisions if r.revision == state.revision), None)
    rolled_away: dict[str, int] = {}
    for revision in revisions:
        for number in revision.numbers[1:]:          # each time this ReplicaSet became current *again*
            before = by_number.get(number - 1)
            if before is not None and before.name != revision.name:
                rolled_away[before.name] = number
    return History(by_number=by_number, current=current, rolled_away=rolled_away)


def plan_rollback(target: DeploymentTarget, state: DeploymentState, revisions: list[Revision],
                  pods: list[PodState], *, target_revision: int | None, trigger: Trigger) -> RollbackDecision:
    """Choose the revision to restore, as `kubectl rollout undo [--to-revision=N]` would, by the rules above.

    Raises:
        PlanningError: the Deployment is paused, or `target_revision` was rolled back from before.
        TargetNotFound: `target_revision` does not exist, or there is no earlier revision to restore.
    """
    if state.paused:
        raise PlanningError(f"{target.resource} is paused; resume it before rolling back (kubectl rollout resume)")
    history = read_history(state, revisions)
    evidence = _evidence(state, revisions, pods, history)
    if target_revision is not None:
        chosen = _requested(target, state, revisions, history, target_revision)
        if chosen is None:
            return _noop(target, f"it already runs revision {target_revision}'s template", evidence)
        why = f"revision {target_revision} was asked for"
    else:
        reason = _keep_current(state, history, trigger)
        if reason:
            return _noop(target, reason, evidence)
        chosen = _previous_good(target, state, revisions, history)
        why = _why_current_is_bad(state, trigger)
    return _decision(target, state, revisions, chosen, why, evidence)


def _keep_current(state: DeploymentState, history: History, trigger: Trigger) -> str | None:
    """Why the current revision must stay, or None when it is the one to roll back."""
    current = history.current
    if history.current_is_rollback:
        restored = current.numbers[-2]
        return (f"revision {state.revision} is itself the result of a rollback (it restored revision {restored}'s "
                f"template, {describe_images(current.images)}); pass target_revision to go further back")
    alert = trigger.alert if trigger.kind == "alert" else None
    if alert and alert.starts_at and current and current.created and current.created > _utc(alert.starts_at):
        return (f"revision {state.revision} ({describe_images(state.images)}) rolled out at "
                f"{_utc(current.created).isoformat()}, after alert {alert.name} began firing at "
                f"{_utc(alert.starts_at).isoformat()}: a newer revision has rolled out since, so this alert "
                f"must not undo it")
    return None


def _why_current_is_bad(state: DeploymentState, trigger: Trigger) -> str:
    healthy = rollout_status(state)[1].endswith("successfully rolled out")
    looks = "its pods look healthy, but " if healthy else ""
    if trigger.kind == "alert" and trigger.alert is not None:
        return (f"{looks}revision {state.revision} was current when alert {trigger.alert.name} began firing"
                + (f" at {_utc(trigger.alert.starts_at).isoformat()}" if trigger.alert.starts_at else ""))
    if trigger.kind == "schedule":
        return f"{looks}a rehearsal plans the rollback of the current revision {state.revision}"
    return f"{looks}the rollback of revision {state.revision} was asked for by hand"


def _requested(target: DeploymentTarget, state: DeploymentState, revisions: list[Revision], history: History,
               number: int) -> Revision | None:
    by_current = {r.revision: r for r in revisions}
    if number not in by_current:
        allowed = ", ".join(str(r) for r in sorted(by_current)) or "none"
        raise TargetNotFound(f"revision {number} of {target.resource} not found; allowed revisions: {allowed}")
    chosen = by_current[number]
    if chosen.template == without_hash(state.template):
        return None
    if chosen.name in history.rolled_away:
        raise PlanningError(
            f"revision {number} ({describe_images(chosen.images)}) was rolled back from at revision "
            f"{history.rolled_away[chosen.name]}: a runbook never rolls back to a release a rollback replaced; "
            f"allowed revisions: {_allowed(state, revisions, history)}")
    return chosen


def _previous_good(target: DeploymentTarget, state: DeploymentState, revisions: list[Revision],
                   history: History) -> Revision:
    current = without_hash(state.template)
    earlier = [r for r in revisions if r.revision < state.revision and r.template != current
               and r.name not in history.rolled_away]
    if not earlier:
        raise TargetNotFound(f"{target.resource} has no earlier revision to roll back to (revisions: "
                            f"{', '.join(str(r.revision) for r in revisions) or 'none'}; rolled back from: "
                            f"{', '.join(str(n - 1) for n in sorted(history.rolled_away.values())) or 'none'})")
    return max(earlier, key=lambda r: r.revision)


def _allowed(state: DeploymentState, revisions: list[Revision], history: History) -> str:
    current = without_hash(state.template)
    ok = [str(r.revision) for r in sorted(revisions, key=lambda r: r.revision)
          if r.template != current and r.name not in history.rolled_away]
    return ", ".join(ok) or "none"


def _decision(target: DeploymentTarget, state: DeploymentState, revisions: list[Revision], chosen: Revision,
              why: str, evidence: list[str]) -> RollbackDecision:
    next_revision = max((n for r in revisions for n in r.numbers), default=0) + 1
    summary = (f"Roll back {target.resource} from revision {state.revision} ({describe_images(state.images)}) "
               f"to revision {chosen.revision} ({describe_images(chosen.images)}), as `kubectl rollout undo "
               f"--to-revision={chosen.revision}` would: {why}. The Deployment records it as revision "
               f"{next_revision}.")
    field = "spec.template (images)"
    if chosen.images == state.images:
        field = "spec.template (non-image fields)"
    changes = [Change(resource=target.resource, field=field, before=describe_images(state.images),
                      after=describe_images(chosen.images)),
               Change(resource=target.resource, field="revision", before=state.revision, after=next_revision)]
    plan = Plan(runbook=RUNBOOK, target=target, summary=summary, changes=changes, evidence=evidence)
    return RollbackDecision(plan=plan, to_revision=chosen, template=chosen.template,
                            annotations=rollback_annotations(state.annotations, chosen))


def _noop(target: DeploymentTarget, reason: str, evidence: list[str]) -> RollbackDecision:
    return RollbackDecision(plan=Plan(runbook=RUNBOOK, target=target, summary=f"Nothing to do on {target.resource}: "
                                                                             f"{reason}.",
                                      noop_reason=reason, evidence=evidence))


def _evidence(state: DeploymentState, revisions: list[Revision], pods: list[PodState], history: History) -> list[str]:
    done, message = rollout_status(state)
    lines = [f"rollout: {message}" + ("" if done else " (in progress)"),
             *readiness_by_revision(revisions, pods)]
    for name, number in sorted(history.rolled_away.items(), key=lambda item: item[1]):
        gone = history.by_number.get(number - 1)
        lines.append(f"revision {number - 1} ({describe_images(gone.images) if gone else name}) was rolled back "
                     f"from at revision {number}")
    return lines


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def check_pod_belongs(owner: str | None, target: DeploymentTarget, pod: str) -> str:
    """An alert named a pod: it must be one of the service's (pod -> ReplicaSet -> Deployment). `owner` is
    the Deployment that owns it, "" when the pod is gone (crash-looping pods are replaced often).

    Raises:
        PlanningError: the pod belongs to another Deployment, or to none.
    """
    if owner == "":
        return f"pod {pod} named by the alert is gone (replaced); acting on {target.resource}"
    if owner != target.deployment:
        owned_by = f"deployment {owner}" if owner else "no Deployment"
        raise PlanningError(f"pod {target.namespace}/{pod} belongs to {owned_by}, not to {target.resource} of service "
                            f"{target.service}; nothing was changed")
    return f"pod {pod} named by the alert belongs to {target.resource}"


def next_steps_after_failure(target: DeploymentTarget, decision: RollbackDecision) -> list[str]:
    """What to do when the restored revision does not verify (a rollback is never undone)."""
    ns, name, restored = target.namespace, target.deployment, decision.to_revision
    return [f"The Deployment now runs the template of revision {restored.revision} "
            f"({describe_images(restored.images)}); it was not rolled forward to the release it replaced.",
            f"Inspect: kubectl -n {ns} rollout status deploy/{name}; kubectl -n {ns} get pods; "
            f"kubectl -n {ns} describe deploy/{name}",
            "If the restored revision is failing too, the cause is probably outside the release (config, "
            "dependencies, nodes): escalate to the service owner; a second rollback to an older revision needs "
            "target_revision and is not the default."]
