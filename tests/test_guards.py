"""Guards: freeze windows (pure), per-target locks and cooldowns (against the session's Prefect server)."""
from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from prefect.client.orchestration import get_client

from tasks.catalog import Environment
from tasks.errors import GuardRefused
from tasks.guards import (check_cooldown, check_freeze, cooldown_record_key, lock_name, record_change,
                          target_lock)
from tasks.models import Target

UTC = dt.timezone.utc
START = dt.datetime(2030, 12, 20, 0, 0, tzinfo=UTC)
END = dt.datetime(2031, 1, 2, 0, 0, tzinfo=UTC)


def frozen_env() -> Environment:
    return Environment.model_validate({
        "cluster": {"kind": "kubeconfig"},
        "freeze_windows": [{"start": START.isoformat(), "end": END.isoformat(), "reason": "year-end freeze"}]})


def fresh_target(service: str = "payments-api") -> Target:
    """A target no other test has touched, so the shared Prefect server holds no lock or record for it."""
    return Target(environment=f"production-{uuid.uuid4().hex[:8]}", service=service,
                  namespace="payments", deployment=service)


# --- freeze windows (pure) -----------------------------------------------------------------------

@pytest.mark.parametrize("now", [START, START + dt.timedelta(days=3), END - dt.timedelta(seconds=1)])
def test_freeze_refuses_inside_window_without_override(now):
    with pytest.raises(GuardRefused) as info:
        check_freeze("production", frozen_env(), now=now, emergency_override=None)
    message = str(info.value)
    assert "'production'" in message
    assert "2030-12-20 00:00-2031-01-02 00:00 UTC" in message
    assert "year-end freeze" in message
    assert "pass emergency_override with a reason" in message


@pytest.mark.parametrize("now", [START - dt.timedelta(seconds=1), END, END + dt.timedelta(days=1)])
def test_freeze_allows_outside_window_and_at_its_end(now):
    assert check_freeze("production", frozen_env(), now=now, emergency_override=None) is None


def test_freeze_without_windows_allows():
    env = Environment.model_validate({"cluster": {"kind": "kubeconfig"}})
    assert check_freeze("staging", env, now=START, emergency_override=None) is None


def test_freeze_override_with_reason_returns_note():
    note = check_freeze("production", frozen_env(), now=START, emergency_override="  SEV1 INC-42 payments down ")
    assert note == ("freeze window 2030-12-20 00:00-2031-01-02 00:00 UTC (year-end freeze) "
                    "overridden: SEV1 INC-42 payments down")


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_freeze_blank_override_is_refused(blank):
    with pytest.raises(GuardRefused, match="pass emergency_override with a reason"):
        check_freeze("production", frozen_env(), now=START, emergency_override=blank)


def test_freeze_naive_now_is_treated_as_utc():
    with pytest.raises(GuardRefused):
        check_freeze("production", frozen_env(), now=START.replace(tzinfo=None), emergency_override=None)


def test_names_fit_prefect_charsets():
    target = Target(environment="Production", service="payments_api/v2", namespace="p", deployment="d")
    assert lock_name(target) == "runbook-target-production-payments-api-v2"
    assert cooldown_record_key(target) == "runbook-last-change-production-payments-api-v2"
    assert lock_name(Target(environment="production", service="payments-api", namespace="p",
                            deployment="d")) == "runbook-target-production-payments-api"


# --- per-target lock -----------------------------------------------------------------------------

class Holder(threading.Thread):
    """Holds the target's lock until told to let go, recording what happened in `events`."""

    def __init__(self, target: Target, events: list[str], name: str, wait_seconds: float = 10) -> None:
        super().__init__(daemon=True)
        self.target, self.events, self.label, self.wait_seconds = target, events, name, wait_seconds
        self.acquired, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with target_lock(self.target, wait_seconds=self.wait_seconds, holder=self.label):
                self.events.append(f"{self.label} acquired")
                self.acquired.set()
                self.release.wait(30)
                self.events.append(f"{self.label} releasing")
        except BaseException as exc:  # handed to the test thread, which asserts on it
            self.error = exc
            self.acquired.set()


def test_second_mutator_waits_until_the_first_releases(prefect_harness):
    target, events = fresh_target(), []
    first = Holder(target, events, "run-a")
    first.start()
    assert first.acquired.wait(20) and first.error is None
    second = Holder(target, events, "run-b")
    second.start()
    assert not second.acquired.wait(1.5), "second run got the lock while the first still held it"
    first.release.set()
    assert second.acquired.wait(20) and second.error is None
    second.release.set()
    first.join(10), second.join(10)
    assert events == ["run-a acquired", "run-a releasing", "run-b acquired", "run-b releasing"]


def test_short_wait_is_refused_with_guard_refused(prefect_harness):
    target = Target(environment="production", service=f"payments-api-{uuid.uuid4().hex[:6]}",
                    namespace="payments", deployment="payments-api")
    first = Holder(target, [], "run-a")
    first.start()
    assert first.acquired.wait(20) and first.error is None
    try:
        with pytest.raises(GuardRefused, match=f"another run is changing {target.key}; try again") as info:
            with target_lock(target, wait_seconds=0.5, holder="run-b"):
                pytest.fail("acquired a lock that another run holds")
        assert isinstance(info.value.__cause__, TimeoutError)
    finally:
        first.release.set()
        first.join(10)


def test_different_targets_do_not_block_each_other(prefect_harness):
    events: list[str] = []
    first = Holder(fresh_target("payments-api"), events, "run-a")
    first.start()
    assert first.acquired.wait(20) and first.error is None
    try:
        with target_lock(fresh_target("checkout"), wait_seconds=5, holder="run-b"):
            events.append("run-b acquired")
    finally:
        first.release.set()
        first.join(10)
    assert events[:2] == ["run-a acquired", "run-b acquired"]


def test_limit_is_created_when_missing_and_reused(prefect_harness):
    target = fresh_target()
    with get_client(sync_client=True) as client:
        names = {limit.name for limit in client.read_global_concurrency_limits(limit=200)}
    assert lock_name(target) not in names
    with target_lock(target, wait_seconds=5, holder="run-a"):
        pass
    with target_lock(target, wait_seconds=5, holder="run-b"):  # exists now: the 409 is tolerated
        pass
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(lock_name(target))
    assert (limit.limit, limit.active, limit.active_slots) == (1, True, 0)


def test_error_in_body_passes_through_and_releases(prefect_harness):
    target = fresh_target()
    with pytest.raises(TimeoutError) as info:
        with target_lock(target, wait_seconds=5, holder="run-a"):
            raise TimeoutError("rollout did not finish")
    assert not isinstance(info.value, GuardRefused)
    with target_lock(target, wait_seconds=1, holder="run-b"):  # would be refused if still held
        pass


def test_loosened_limit_is_refused(prefect_harness):

    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    target = fresh_target()
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=lock_name(target), limit=3))
    with pytest.raises(GuardRefused, match="must be active with limit 1"):
        with target_lock(target, wait_seconds=1, holder="run-a"):
            pytest.fail("a limit of 3 is not a lock")


# --- cooldown ------------------------------------------------------------------------------------

T0 = dt.datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def test_change_within_cooldown_is_refused_naming_the_run(prefect_harness):
    target = fresh_target()
    record_change(target, run="deploy-7f3a", at=T0)
    with pytest.raises(GuardRefused) as info:
        check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(seconds=10))
    assert str(info.value) == (
        f"payments-api in {target.environment} was changed by run deploy-7f3a at 2031-03-01T12:00:00+00:00; "
        "cooldown of 300 s until 2031-03-01T12:05:00+00:00")


def test_after_cooldown_passes(prefect_harness):
    target = fresh_target()
    record_change(target, run="deploy-7f3a", at=T0)
    check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(seconds=300))
    check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(hours=1))


def test_cooldown_zero_never_refuses(prefect_harness):
    target = fresh_target()
    record_change(target, run="deploy-7f3a", at=T0)
    check_cooldown(target, cooldown_seconds=0, now=T0)


def test_never_changed_target_passes(prefect_harness):
    check_cooldown(fresh_target(), cooldown_seconds=300, now=T0)


def test_latest_record_overwrites(prefect_harness):
    target = fresh_target()
    record_change(target, run="first", at=T0)
    record_change(target, run="second", at=T0 + dt.timedelta(minutes=10))
    with pytest.raises(GuardRefused, match="changed by run second"):
        check_cooldown(target, cooldown_seconds=300, now=T0 + dt.timedelta(minutes=11))


def test_unreadable_record_fails_closed(prefect_harness):
    from prefect.client.schemas.actions import ArtifactCreate

    target = fresh_target()
    with get_client(sync_client=True) as client:      # e.g. written by hand, without run and at
        client.create_artifact(ArtifactCreate(key=cooldown_record_key(target), type="markdown",
                                              data="not a record", metadata_={"note": "by hand"}))
    with pytest.raises(GuardRefused, match="unreadable"):
        check_cooldown(target, cooldown_seconds=300, now=T0)


def test_every_change_is_kept_as_history(prefect_harness):
    """Each record is a new version of the key: the UI shows the target's changes, newest first."""
    target = fresh_target()
    record_change(target, run="first", at=T0)
    record_change(target, run="second", at=T0 + dt.timedelta(minutes=10))
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    with get_client(sync_client=True) as client:
        versions = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[cooldown_record_key(target)])))
    assert sorted(v.metadata_["run"] for v in versions) == ["first", "second"]
