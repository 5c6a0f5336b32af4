"""Planning a rollback: pure decisions on typed state, so they are tested without a cluster."""
from __future__ import annotations

from pydantic import BaseModel

from .errors import PermanentError, TargetNotFound
from .kubernetes.deployments import DeploymentState, Revision, rollback_annotations
from .models import Change, Plan, Target

RUNBOOK = "emergency-rollback"


class RollbackDecision(BaseModel):
    plan: Plan
    to_revision: Revision | None = None     # None when there is nothing to do
    template: dict | None = None
    annotations: dict[str, str] | None = None


def is_healthy(state: DeploymentState) -> bool:
    """Fully rolled out and available: the state an alert firing twice must not undo."""
    return (state.observed_generation >= state.generation and state.progressing_reason != "ProgressDeadlineExceeded"
            and state.updated_replicas == state.replicas and state.available_replicas >= state.replicas)


def _images(images: dict[str, str]) -> str:
    return ", ".join(f"{name}={image}" for name, image in sorted(images.items()))


def plan_rollback(target: Target, state: DeploymentState, revisions: list[Revision],
                  target_revision: int | None, *, rehearse: bool = False) -> RollbackDecision:
    """Choose the revision to go back to, as `kubectl rollout undo [--to-revision=N]` would, but never
    toggle back to a bad release: with no target revision and a healthy current one, change nothing.

    `rehearse` (dry runs) plans the rollback even for a healthy service, so a scheduled dry run proves
    there is still something to roll back to: it fails loudly when the runbook has rotted.
    """
    if state.paused:
        raise PermanentError(f"deployment {target.namespace}/{target.deployment} is paused; resume it before "
                             "rolling back (kubectl rollout resume)")
    by_number = {r.revision: r for r in revisions}
    current = by_number.get(state.revision)
    resource = f"deployment {target.namespace}/{target.deployment}"

    def noop(reason: str) -> RollbackDecision:
        summary = f"Nothing to do on {resource}: {reason}."
        return RollbackDecision(plan=Plan(runbook=RUNBOOK, target=target, summary=summary, noop_reason=reason))

    if target_revision is not None:
        if target_revision not in by_number:
            allowed = ", ".join(str(r) for r in sorted(by_number)) or "none"
            raise TargetNotFound(f"revision {target_revision} of {resource} not found; allowed revisions: {allowed}")
        chosen = by_number[target_revision]
        if chosen.template == _strip(state.template):
            return noop(f"it already runs revision {target_revision}'s template ({_images(chosen.images)})")
    else:
        if is_healthy(state) and not rehearse:
            return noop(f"revision {state.revision} ({_images(state.images)}) is healthy: "
                        f"{state.available_replicas}/{state.replicas} available; pass target_revision to force")
        earlier = [r for r in revisions if r.revision < state.revision and r.template != _strip(state.template)]
        if not earlier:
            raise TargetNotFound(f"{resource} has no earlier revision to roll back to "
                                 f"(revisions: {', '.join(str(r) for r in sorted(by_number)) or 'none'})")
        chosen = earlier[-1]
    template = chosen.template
    annotations = rollback_annotations(state.annotations, chosen)
    next_revision = max(by_number, default=0) + 1
    summary = (f"Roll back {resource} from revision {state.revision} ({_images(state.images)}) to revision "
               f"{chosen.revision} ({_images(chosen.images)}), as `kubectl rollout undo --to-revision="
               f"{chosen.revision}` would. The Deployment records it as revision {next_revision}.")
    if current is not None:
        summary += f" Current state: {state.available_replicas}/{state.replicas} available"
        summary += f", {state.progressing_reason}." if state.progressing_reason else "."
    if rehearse and target_revision is None and is_healthy(state):
        summary += " (Rehearsal: the current revision is healthy, so a real run would change nothing.)"
    changes = [Change(resource=resource, field="spec.template (images)", before=_images(state.images),
                      after=_images(chosen.images)),
               Change(resource=resource, field="revision", before=state.revision, after=next_revision)]
    if template != _strip(state.template) and _images(chosen.images) == _images(state.images):
        changes[0].field = "spec.template (non-image fields)"
    return RollbackDecision(plan=Plan(runbook=RUNBOOK, target=target, summary=summary, changes=changes),
                            to_revision=chosen, template=template, annotations=annotations)


def _strip(template: dict) -> dict:
    from .kubernetes.deployments import _without_hash
    return _without_hash(template)
