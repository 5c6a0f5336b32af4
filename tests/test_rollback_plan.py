"""The rollback planner's decisions, on typed fixtures (no cluster, no Prefect)."""
from __future__ import annotations

import pytest

from tasks.errors import PermanentError, TargetNotFound
from tasks.kubernetes.deployments import DeploymentState, Revision
from tasks.models import Target
from tasks.rollback_plan import is_healthy, plan_rollback

TARGET = Target(environment="production", service="payments-api", namespace="payments", deployment="payments-api")


def template(image: str) -> dict:
    return {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": image}]}}


def revision(number: int, image: str) -> Revision:
    return Revision(name=f"api-{number}", revision=number, images={"api": image}, template=template(image),
                    annotations={"deployment.kubernetes.io/revision": str(number), "team": f"t{number}"},
                    replicas=0, ready_replicas=0)


def state(image: str, rev: int, *, available: int = 3, updated: int = 3, reason: str | None = None,
          paused: bool = False) -> DeploymentState:
    return DeploymentState(namespace="payments", name="payments-api", uid="u", resource_version="9", generation=2,
                           observed_generation=2, replicas=3, ready_replicas=available, updated_replicas=updated,
                           available_replicas=available, revision=rev, images={"api": image}, paused=paused,
                           selector={"matchLabels": {"app": "api"}}, template=template(image),
                           annotations={"deployment.kubernetes.io/revision": str(rev),
                                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                           progressing_reason=reason)


REVISIONS = [revision(1, "api:1"), revision(2, "api:2-crashloop")]


def test_unhealthy_current_revision_rolls_back_to_the_previous_one():
    decision = plan_rollback(TARGET, state("api:2-crashloop", 2, available=3, updated=1), REVISIONS, None)
    assert decision.to_revision.revision == 1
    assert decision.template == template("api:1")
    assert "revision 2" in decision.plan.summary and "revision 1" in decision.plan.summary
    assert "revision 3" in decision.plan.summary                    # what the Deployment will record
    assert decision.plan.changes[0].before == "api=api:2-crashloop"
    assert decision.plan.changes[0].after == "api=api:1"


def test_annotations_follow_kubectl_rollout_undo():
    decision = plan_rollback(TARGET, state("api:2-crashloop", 2, updated=1), REVISIONS, None)
    assert decision.annotations == {"deployment.kubernetes.io/revision": "2",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "t1"}


def test_healthy_current_revision_without_target_changes_nothing():
    decision = plan_rollback(TARGET, state("api:2", 2), [revision(1, "api:1"), revision(2, "api:2")], None)
    assert decision.plan.is_noop and decision.to_revision is None
    assert "healthy" in decision.plan.noop_reason and "target_revision" in decision.plan.noop_reason


def test_progress_deadline_exceeded_is_unhealthy():
    assert not is_healthy(state("api:2", 2, reason="ProgressDeadlineExceeded"))
    assert is_healthy(state("api:2", 2, reason="NewReplicaSetAvailable"))


def test_explicit_target_revision_is_honoured_even_when_healthy():
    decision = plan_rollback(TARGET, state("api:2", 2), [revision(1, "api:1"), revision(2, "api:2")], 1)
    assert decision.to_revision.revision == 1


def test_target_revision_already_running_is_a_noop():
    decision = plan_rollback(TARGET, state("api:1", 3), [revision(2, "api:2"), revision(3, "api:1")], 3)
    assert decision.plan.is_noop and "already runs revision 3" in decision.plan.noop_reason


def test_unknown_revision_names_the_allowed_ones():
    with pytest.raises(TargetNotFound, match="revision 9 .* allowed revisions: 1, 2"):
        plan_rollback(TARGET, state("api:2-crashloop", 2, updated=1), REVISIONS, 9)


def test_no_earlier_revision_is_a_clear_error():
    with pytest.raises(TargetNotFound, match="no earlier revision"):
        plan_rollback(TARGET, state("api:1", 1, updated=1), [revision(1, "api:1")], None)


def test_paused_deployment_is_refused():
    with pytest.raises(PermanentError, match="paused"):
        plan_rollback(TARGET, state("api:2", 2, updated=1, paused=True), REVISIONS, None)


def test_plan_digest_changes_with_the_plan():
    a = plan_rollback(TARGET, state("api:2-crashloop", 2, updated=1), REVISIONS, None).plan
    b = plan_rollback(TARGET, state("api:2-crashloop", 2, updated=1), REVISIONS, None).plan
    c = plan_rollback(TARGET, state("api:3", 2, updated=1), REVISIONS, None).plan
    assert a.digest == b.digest != c.digest


def test_rehearsal_plans_a_rollback_even_when_healthy():
    decision = plan_rollback(TARGET, state("api:2", 2), [revision(1, "api:1"), revision(2, "api:2")], None,
                             rehearse=True)
    assert decision.to_revision.revision == 1 and "Rehearsal" in decision.plan.summary


def test_rehearsal_without_an_earlier_revision_fails_loudly():
    with pytest.raises(TargetNotFound, match="no earlier revision"):
        plan_rollback(TARGET, state("api:1", 1), [revision(1, "api:1")], None, rehearse=True)
