"""The rollback planner's decisions, on typed fixtures (no cluster, no Prefect)."""
from __future__ import annotations

import datetime as dt

import pytest

from plans.kubernetes import DeploymentState, PodState, Revision, rollout_status, rollout_succeeded
from plans.rollback import PlanningError, check_pod_belongs, plan_rollback
from plans.targets import DeploymentTarget
from plans.trigger import AlertContext, Trigger
from tasks.errors import PermanentError, TargetNotFound

TARGET = DeploymentTarget(environment="production", cluster="https://127.0.0.1:6443", service="payments-api",
                          namespace="payments", deployment="payments-api")
T0 = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc)
MANUAL = Trigger(kind="manual")


def template(image: str) -> dict:
    return {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": image}]}}


def revision(number: int, image: str, *, history: tuple[int, ...] = (), minutes: int | None = None) -> Revision:
    created = T0 + dt.timedelta(minutes=minutes if minutes is not None else number * 10)
    return Revision(name=f"api-{image}", revision=number, history=list(history), pod_template_hash=f"h{image}",
                    created=created, images={"api": image}, template=template(image),
                    annotations={"deployment.kubernetes.io/revision": str(number), "team": f"t{image}"},
                    replicas=0, ready_replicas=0)


def state(image: str, rev: int, *, replicas: int = 3, status_replicas: int | None = None, available: int = 3,
          updated: int | None = None, reason: str | None = None, paused: bool = False) -> DeploymentState:
    updated = replicas if updated is None else updated
    return DeploymentState(namespace="payments", name="payments-api", uid="u", resource_version="9", generation=2,
                           observed_generation=2, replicas=replicas,
                           status_replicas=replicas if status_replicas is None else status_replicas,
                           ready_replicas=available, updated_replicas=updated, available_replicas=available,
                           revision=rev, images={"api": image}, paused=paused,
                           selector={"matchLabels": {"app": "api"}}, template=template(image),
                           annotations={"deployment.kubernetes.io/revision": str(rev),
                                        "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                           progressing_reason=reason)


def pod(image: str, *, ready: bool, waiting: str | None = None) -> PodState:
    return PodState(name=f"p-{image}-{ready}", node="n", phase="Running", ready=ready, restarts=0 if ready else 4,
                    images=[image], waiting_reason=waiting, template_hash=f"h{image}")


def alert(starts_at: dt.datetime) -> Trigger:
    context = AlertContext(source="alertmanager", name="KubePodCrashLooping", starts_at=starts_at)
    return Trigger(kind="alert", detail=context.describe(), alert=context)


HISTORY = [revision(1, "1.4.1"), revision(2, "1.4.2"), revision(3, "1.5.0")]


def test_kubectl_rule_old_replicas_pending_termination_is_not_done():
    """kubectl's rule: status.replicas > updatedReplicas means old pods are still there."""
    done, message = rollout_status(state("1.4.2", 4, status_replicas=4, available=4))
    assert not done and message == "1 old replicas are pending termination"
    assert rollout_succeeded(state("1.4.2", 4))


def test_single_replica_crash_loop_beside_the_old_ready_pod_is_not_healthy():
    """replicas 1: the new pod crash loops, the old one stays Ready: updated 1, available 1, but 2 exist."""
    assert not rollout_succeeded(state("1.5.0-crashloop", 3, replicas=1, status_replicas=2, available=1, updated=1))


def test_manual_run_rolls_back_a_release_whose_pods_look_healthy():
    decision = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [pod("1.5.0", ready=True)] * 3,
                             target_revision=None, trigger=MANUAL)
    assert decision.to_revision.revision == 2 and decision.template == template("1.4.2")
    assert "its pods look healthy" in decision.plan.summary and "asked for by hand" in decision.plan.summary
    assert "revision 4" in decision.plan.summary                     # what the Deployment will record
    assert decision.plan.changes[0].before == "api=1.5.0" and decision.plan.changes[0].after == "api=1.4.2"
    assert any("revision 3 (api=1.5.0): 3/3 pods Ready" in e for e in decision.plan.evidence)


def test_gate_evidence_says_which_revision_is_ready_not_just_available():
    pods = [pod("1.5.0-crashloop", ready=False, waiting="CrashLoopBackOff"), pod("1.4.2", ready=True)]
    history = [revision(1, "1.4.1"), revision(2, "1.4.2"), revision(3, "1.5.0-crashloop")]
    decision = plan_rollback(TARGET, state("1.5.0-crashloop", 3, replicas=1, status_replicas=2, available=1),
                             history, pods, target_revision=None, trigger=MANUAL)
    evidence = "\n".join(decision.plan.evidence)
    assert "revision 3 (api=1.5.0-crashloop): 0/1 pods Ready, CrashLoopBackOff, 4 restarts" in evidence
    assert "revision 2 (api=1.4.2): 1/1 pods Ready" in evidence
    assert "old replicas are pending termination" in evidence
    assert "look healthy" not in decision.plan.summary


def test_annotations_follow_kubectl_rollout_undo():
    decision = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=None, trigger=MANUAL)
    assert decision.annotations == {"deployment.kubernetes.io/revision": "3",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "t1.4.2"}


def test_a_revision_that_is_itself_a_rollback_is_a_noop_that_says_so():
    after = [revision(1, "1.4.1"), revision(3, "1.5.0"), revision(4, "1.4.2", history=(2,), minutes=20)]
    decision = plan_rollback(TARGET, state("1.4.2", 4), after, [], target_revision=None, trigger=MANUAL)
    assert decision.plan.is_noop and decision.to_revision is None
    assert "itself the result of a rollback" in decision.plan.noop_reason
    assert "target_revision" in decision.plan.noop_reason


def test_target_revision_goes_further_back_but_never_to_a_rolled_back_release():
    after = [revision(1, "1.4.1"), revision(3, "1.5.0"), revision(4, "1.4.2", history=(2,), minutes=20)]
    decision = plan_rollback(TARGET, state("1.4.2", 4), after, [], target_revision=1, trigger=MANUAL)
    assert decision.to_revision.revision == 1
    with pytest.raises(PlanningError, match=r"revision 3 \(api=1.5.0\) was rolled back from at revision 4.*"
                                             r"allowed revisions: 1"):
        plan_rollback(TARGET, state("1.4.2", 4), after, [], target_revision=3, trigger=MANUAL)


def test_default_choice_skips_a_release_a_rollback_rolled_away_from():
    """1.5.0 was rolled back (rev 4 = 1.4.2), then 1.6.0 shipped (rev 5); rolling 1.6.0 back goes to 1.4.2."""
    history = [revision(1, "1.4.1"), revision(3, "1.5.0"), revision(4, "1.4.2", history=(2,), minutes=25),
               revision(5, "1.6.0", minutes=50)]
    decision = plan_rollback(TARGET, state("1.6.0", 5), history, [], target_revision=None, trigger=MANUAL)
    assert decision.to_revision.revision == 4


def test_alert_run_rolls_back_the_revision_current_when_the_alert_began():
    decision = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=None,
                             trigger=alert(T0 + dt.timedelta(minutes=35)))
    assert decision.to_revision.revision == 2
    assert "was current when alert KubePodCrashLooping began firing" in decision.plan.summary


def test_alert_run_is_a_noop_when_a_newer_revision_rolled_out_since_the_alert_began():
    decision = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=None,
                             trigger=alert(T0 + dt.timedelta(minutes=25)))
    assert decision.plan.is_noop
    assert "after alert KubePodCrashLooping began firing" in decision.plan.noop_reason


def test_alert_run_after_a_rollback_changes_nothing():
    after = [revision(1, "1.4.1"), revision(3, "1.5.0"), revision(4, "1.4.2", history=(2,), minutes=20)]
    decision = plan_rollback(TARGET, state("1.4.2", 4), after, [], target_revision=None,
                             trigger=alert(T0 + dt.timedelta(minutes=35)))
    assert decision.plan.is_noop and "itself the result of a rollback" in decision.plan.noop_reason


def test_target_revision_already_running_is_a_noop():
    decision = plan_rollback(TARGET, state("1.4.2", 2), HISTORY[:2], [], target_revision=2, trigger=MANUAL)
    assert decision.plan.is_noop and "revision 2" in decision.plan.noop_reason


def test_unknown_revision_names_the_allowed_ones():
    with pytest.raises(TargetNotFound, match="revision 7 .* not found; allowed revisions: 1, 2, 3"):
        plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=7, trigger=MANUAL)


def test_no_earlier_revision_is_a_clear_error():
    with pytest.raises(TargetNotFound, match="no earlier revision"):
        plan_rollback(TARGET, state("1.4.1", 1), HISTORY[:1], [], target_revision=None, trigger=MANUAL)


def test_paused_deployment_is_refused():
    with pytest.raises(PermanentError, match="paused"):
        plan_rollback(TARGET, state("1.5.0", 3, paused=True), HISTORY, [], target_revision=None, trigger=MANUAL)


def test_plan_digest_changes_with_the_plan_not_with_its_evidence():
    a = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=None, trigger=MANUAL).plan
    b = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [pod("1.5.0", ready=True)], target_revision=None,
                      trigger=MANUAL).plan
    c = plan_rollback(TARGET, state("1.5.0", 3), HISTORY, [], target_revision=1, trigger=MANUAL).plan
    assert a.digest == b.digest != c.digest and len(a.digest) == 12


def test_a_pod_is_checked_against_the_service_it_was_said_to_belong_to():
    assert "belongs to" in check_pod_belongs("payments-api", TARGET, "payments-api-7d9f8-abcde")
    assert "is gone" in check_pod_belongs("", TARGET, "payments-api-7d9f8-abcde")
    with pytest.raises(PlanningError, match="belongs to deployment cart, not to deployment payments/payments-api"):
        check_pod_belongs("cart", TARGET, "cart-5c6d-xyz")
    with pytest.raises(PlanningError, match="belongs to no Deployment"):
        check_pod_belongs(None, TARGET, "web-0")
