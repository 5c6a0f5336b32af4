"""The per-object lock, against the session's Prefect server: one mutator per object, a refusal that names
the holder and what it is doing, and a slot freed when its holder's run has ended."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.states import Completed, Paused, Running

from plans.targets import DeploymentTarget, holder_record_key, lock_name
from tasks.errors import GuardRefused
from tasks.lock import Holder as HolderRecord
from tasks.lock import _record_holder, target_lock

pytestmark = pytest.mark.usefixtures("prefect_harness")


def fresh_target(service: str = "payments-api") -> DeploymentTarget:
    """An object no other test has touched, so the shared Prefect server holds no lock or record for it."""
    return DeploymentTarget(environment="production", cluster=f"https://k8s-{uuid.uuid4().hex[:8]}", service=service,
                            namespace="payments", deployment=service)


class Holder(threading.Thread):
    """Holds the target's lock until told to let go, recording what happened in `events`."""

    def __init__(self, target, events: list[str], name: str, wait_seconds: float = 10) -> None:
        super().__init__(daemon=True)
        self.target, self.events, self.label, self.wait_seconds = target, events, name, wait_seconds
        self.acquired, self.release = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with target_lock(self.target, wait_seconds=self.wait_seconds, runbook=self.label, run_id=None):
                self.events.append(f"{self.label} acquired")
                self.acquired.set()
                self.release.wait(30)
                self.events.append(f"{self.label} releasing")
        except BaseException as exc:  # handed to the test thread, which asserts on it
            self.error = exc
            self.acquired.set()


@flow(name="lock-holder-stand-in", persist_result=False)
def stand_in() -> None:
    """A flow run whose state a test then sets, to stand for a holder that waits, changes or ended."""


def run_in_state(state) -> uuid.UUID:
    run_id = stand_in(return_state=True).state_details.flow_run_id
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, state, force=True)
    return run_id


def occupy(target, run_id: uuid.UUID, *, with_lease: bool = True) -> None:
    """Take the slot as a holder would, and record it, without ever releasing it."""
    name = lock_name(target.key)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        if with_lease:
            lease = client.increment_concurrency_slots_with_lease(names=[name], slots=1, mode="concurrency",
                                                                  lease_duration=60).json()["lease_id"]
        else:       # as after a server restart that lost its in-memory leases
            client.increment_concurrency_slots(names=[name], slots=1, mode="concurrency")
            lease = str(uuid.uuid4())
        _record_holder(client, target, HolderRecord(run=str(run_id), runbook="emergency-rollback", lease_id=lease,
                                                    since=__import__("datetime").datetime.now(
                                                        __import__("datetime").timezone.utc)), run_id)


def active_slots(target) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(lock_name(target.key)).active_slots


def test_second_mutator_waits_until_the_first_releases():
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
    assert active_slots(target) == 0


def test_refusal_names_a_holder_that_is_changing_the_object():
    target = fresh_target()
    occupy(target, run_in_state(Running()))
    with pytest.raises(GuardRefused, match=r"run .* \(emergency-rollback\) is changing production/payments-api "
                                           r"\(it is Running since .*waited 0.5 s for lock"):
        with target_lock(target, wait_seconds=0.5, runbook="emergency-rollback", run_id=None):
            pytest.fail("acquired a lock that another run holds")


def test_a_holder_waiting_for_approval_is_named_at_once_without_waiting():
    target = fresh_target()
    occupy(target, run_in_state(Paused(timeout_seconds=600)))
    started = time.monotonic()
    with pytest.raises(GuardRefused, match="is waiting for approval since .*; answer or cancel it first"):
        with target_lock(target, wait_seconds=20, runbook="emergency-rollback", run_id=None):
            pytest.fail("acquired a lock that another run holds")
    assert time.monotonic() - started < 10      # refused on sight, not after the 20 s wait


@pytest.mark.parametrize("with_lease", [True, False], ids=["lease-kept", "lease-lost-by-server"])
def test_a_slot_whose_holder_run_has_ended_is_freed(with_lease):
    """The holder's process died and its run ended, but the slot is still counted: the next run frees it,
    through the lease when the server has it, else (a restart lost it) by one decrement."""
    target = fresh_target()
    occupy(target, run_in_state(Completed()), with_lease=with_lease)
    assert active_slots(target) == 1
    with target_lock(target, wait_seconds=5, runbook="emergency-rollback", run_id=None):
        assert active_slots(target) == 1
    assert active_slots(target) == 0


def test_different_objects_do_not_block_each_other():
    events: list[str] = []
    first = Holder(fresh_target("payments-api"), events, "run-a")
    first.start()
    assert first.acquired.wait(20) and first.error is None
    try:
        with target_lock(fresh_target("checkout"), wait_seconds=5, runbook="run-b", run_id=None):
            events.append("run-b acquired")
    finally:
        first.release.set()
        first.join(10)
    assert events[:2] == ["run-a acquired", "run-b acquired"]


def test_one_object_under_two_catalog_names_shares_one_lock():
    """Keys name the object (cluster, namespace, kind, name), not the catalog entry."""
    production = fresh_target()
    staging = production.model_copy(update={"environment": "staging", "service": "payments"})
    assert lock_name(production.key) == lock_name(staging.key)
    events: list[str] = []
    first = Holder(production, events, "production-run")
    first.start()
    assert first.acquired.wait(20) and first.error is None
    try:
        with pytest.raises(GuardRefused, match="is changing"):
            with target_lock(staging, wait_seconds=0.5, runbook="staging-run", run_id=None):
                pytest.fail("a second catalog name bypassed the lock")
    finally:
        first.release.set()
        first.join(10)


def test_error_in_body_passes_through_and_releases():
    target = fresh_target()
    with pytest.raises(TimeoutError) as info:
        with target_lock(target, wait_seconds=5, runbook="run-a", run_id=None):
            raise TimeoutError("rollout did not finish")
    assert not isinstance(info.value, GuardRefused)
    with target_lock(target, wait_seconds=1, runbook="run-b", run_id=None):  # would be refused if still held
        pass


def test_loosened_limit_is_refused():
    target = fresh_target()
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=lock_name(target.key), limit=3))
    with pytest.raises(GuardRefused, match="must be active with limit 1"):
        with target_lock(target, wait_seconds=1, runbook="run-a", run_id=None):
            pytest.fail("a limit of 3 is not a lock")


def test_names_fit_prefect_charsets_and_never_collide():
    a = fresh_target()
    b = a.model_copy(update={"cluster": a.cluster + "-other"})
    for name in (lock_name(a.key), holder_record_key(a.key)):
        assert name == name.lower() and all(c.isalnum() or c == "-" for c in name) and len(name) < 120
    assert lock_name(a.key) != lock_name(b.key)
