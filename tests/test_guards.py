"""Guards: freeze windows (pure) and the cooldown, read from the change journal (the session's Prefect server)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from prefect.client.orchestration import get_client

from plans.plan import Change
from plans.targets import DeploymentTarget, change_record_key
from tasks.catalog import Environment
from tasks.errors import GuardRefused
from tasks.guards import check_cooldown, check_freeze
from tasks.journal import JournalEntry, journal, last_change

UTC = dt.timezone.utc
START = dt.datetime(2030, 12, 20, 0, 0, tzinfo=UTC)
END = dt.datetime(2031, 1, 2, 0, 0, tzinfo=UTC)


def frozen_env() -> Environment:
    return Environment.model_validate({
        "cluster": {"kind": "kubeconfig", "context": "sandbox"},
        "freeze_windows": [{"start": START.isoformat(), "end": END.isoformat(), "reason": "year-end freeze"}]})


def fresh_target(service: str = "payments-api") -> DeploymentTarget:
    """An object no other test has touched, so the shared Prefect server holds no record for it."""
    return DeploymentTarget(environment="production", cluster=f"https://k8s-{uuid.uuid4().hex[:8]}", service=service,
                            namespace="payments", deployment=service)


# --- freeze windows (pure) -----------------------------------------------------------------------

@pytest.mark.parametrize("now", [START, START + dt.timedelta(days=3), END - dt.timedelta(seconds=1)])
def test_freeze_refuses_inside_window_without_override(now):
    with pytest.raises(GuardRefused) as info:
        check_freeze("production", frozen_env(), now=now, emergency_override=None, dry_run=False)
    message = str(info.value)
    assert "'production'" in message
    assert "2030-12-20 00:00-2031-01-02 00:00 UTC" in message
    assert "year-end freeze" in message
    assert "pass emergency_override with a reason" in message


@pytest.mark.parametrize("now", [START - dt.timedelta(seconds=1), END, END + dt.timedelta(days=1)])
def test_freeze_allows_outside_window_and_at_its_end(now):
    assert check_freeze("production", frozen_env(), now=now, emergency_override=None, dry_run=False) is None


def test_freeze_without_windows_allows():
    env = Environment.model_validate({"cluster": {"kind": "kubeconfig", "context": "sandbox"}})
    assert check_freeze("staging", env, now=START, emergency_override=None, dry_run=False) is None


def test_freeze_override_with_reason_returns_note():
    note = check_freeze("production", frozen_env(), now=START, emergency_override="  SEV1 INC-42 payments down ",
                        dry_run=False)
    assert note == ("freeze window 2030-12-20 00:00-2031-01-02 00:00 UTC (year-end freeze) "
                    "overridden: SEV1 INC-42 payments down")


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_freeze_blank_override_is_refused(blank):
    with pytest.raises(GuardRefused, match="pass emergency_override with a reason"):
        check_freeze("production", frozen_env(), now=START, emergency_override=blank, dry_run=False)


def test_a_dry_run_inside_a_freeze_is_never_refused_and_the_note_says_so():
    note = check_freeze("production", frozen_env(), now=START, emergency_override=None, dry_run=True)
    assert "year-end freeze" in note and "dry run changes nothing" in note


def test_freeze_naive_now_is_treated_as_utc():
    with pytest.raises(GuardRefused):
        check_freeze("production", frozen_env(), now=START.replace(tzinfo=None), emergency_override=None, dry_run=False)


# --- cooldown, from the change journal -----------------------------------------------------------

T0 = dt.datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
CHANGE = Change(resource="deployment payments/payments-api", field="spec.template (images)", before="a", after="b")


def record(target, run: str, at: dt.datetime, *statuses: str, step: int = 1) -> None:
    for offset, status in enumerate(statuses):
        journal(JournalEntry(run=run, runbook="emergency-rollback", step=step, status=status,
                             at=at + dt.timedelta(seconds=offset), target=target, change=CHANGE), flow_run_id=None)


@pytest.fixture
def server(prefect_harness):
    return prefect_harness


def test_change_within_cooldown_is_refused_naming_the_run(server):
    target = fresh_target()
    record(target, "deploy-7f3a", T0, "intended", "made")
    with pytest.raises(GuardRefused) as info:
        check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(seconds=10))
    assert str(info.value) == (
        "deployment payments/payments-api (production/payments-api) was changed by run deploy-7f3a "
        "(emergency-rollback) at 2031-03-01T12:00:00+00:00; cooldown of 300 s until 2031-03-01T12:05:00+00:00")


def test_after_cooldown_passes(server):
    target = fresh_target()
    record(target, "deploy-7f3a", T0, "intended", "made")
    check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(seconds=300))
    check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(hours=1))


def test_cooldown_zero_never_refuses(server):
    target = fresh_target()
    record(target, "deploy-7f3a", T0, "intended", "made")
    check_cooldown(target, cooldown_seconds=0, now=T0)


def test_never_changed_target_passes(server):
    check_cooldown(fresh_target(), cooldown_seconds=300, now=T0)


@pytest.mark.parametrize("statuses, counts", [
    (("intended", "made"), True), (("intended",), True),                 # cut off mid-step: may be in place
    (("intended", "made", "undone"), True), (("intended", "failed"), False),
    (("intended", "not-needed"), False)])
def test_only_steps_that_may_have_changed_the_object_start_a_cooldown(server, statuses, counts):
    target = fresh_target()
    record(target, "run-1", T0, *statuses)
    assert (last_change(target.key) is not None) == counts


def test_the_newest_change_wins_and_each_run_is_judged_by_its_own_steps(server):
    target = fresh_target()
    record(target, "first", T0, "intended", "made")
    record(target, "second", T0 + dt.timedelta(minutes=10), "intended", "made")
    record(target, "third", T0 + dt.timedelta(minutes=11), "intended", "failed")     # changed nothing
    with pytest.raises(GuardRefused, match="changed by run second"):
        check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(minutes=12))


def test_one_object_under_two_catalog_names_shares_its_cooldown(server):
    production = fresh_target()
    staging = production.model_copy(update={"environment": "staging", "service": "payments"})
    record(production, "prod-run", T0, "intended", "made")
    with pytest.raises(GuardRefused, match="prod-run"):
        check_cooldown(staging, cooldown_seconds=300, now=T0 + dt.timedelta(seconds=5))


def test_unreadable_record_fails_closed(server):
    from prefect.client.schemas.actions import ArtifactCreate

    target = fresh_target()
    with get_client(sync_client=True) as client:      # e.g. written by hand, without the journal's fields
        client.create_artifact(ArtifactCreate(key=change_record_key(target.key), type="markdown",
                                              data="not a record", metadata_={"note": "by hand"}))
    with pytest.raises(GuardRefused, match="unreadable"):
        check_cooldown(target, cooldown_seconds=300, now=T0)
