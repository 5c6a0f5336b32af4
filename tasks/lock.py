"""One mutating run per object: a lock on a Prefect global concurrency limit, held with a lease.

Why a lease we hold ourselves (Prefect's public client calls, not `concurrency()`): the lock must be
freed when its holder is gone, and a refusal must say who holds it and what it is doing. So the lease id
and the holder are recorded (a version of the `runbook-lock-holder-...` artifact) right after acquiring:

- A holder that is alive renews its lease in the background; if it dies, the lease expires after
  `LEASE_SECONDS` and Prefect's repossessor frees the slot. `runbooks up` keeps leases on disk
  (`PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=...filesystem`), so they survive a server restart.
- On a server that lost its leases (in-memory lease storage, restarted), the slot would stay taken
  forever. A waiting run that finds the recorded holder's flow run ended (or gone) frees that holder's
  slot itself: through its lease if the server still has it, else by one plain decrement.
- A holder waiting at its approval gate may wait for many minutes: a run that finds one refuses at once,
  naming it, instead of waiting.

The one race left: a run that acquires and has not yet written its holder record (milliseconds) could be
taken for a stale holder's slot by a third run that read the old record just before. The lease and the
record are written back to back to keep that window small.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from contextlib import contextmanager
from typing import Iterator
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.client.schemas.sorting import ArtifactSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel

from plans.targets import Target, holder_record_key, lock_name

from .calls import run_logger
from .errors import GuardRefused

LEASE_SECONDS = 60          # Prefect's minimum; a dead holder's slot frees this long after its last renewal
RENEW_EVERY_SECONDS = 15
POLL_SECONDS = 0.5


class Holder(BaseModel):
    run: str
    runbook: str
    lease_id: str
    since: dt.datetime


class HeldBy(BaseModel):
    """What the current holder is doing, read from its flow run."""
    holder: Holder | None
    state: str | None = None            # the holder run's state name; None when the run is gone
    state_since: dt.datetime | None = None
    paused: bool = False
    final: bool = False

    def describe(self, target: Target) -> str:
        if self.holder is None:
            return f"another run is changing {target.label} (no holder was recorded)"
        who = f"run {self.holder.run} ({self.holder.runbook})"
        since = f" since {self.state_since:%Y-%m-%d %H:%M:%S} UTC" if self.state_since else ""
        if self.paused:
            return f"{who} holds {target.label} and is waiting for approval{since}; answer or cancel it first"
        if self.final:
            return f"{who} held {target.label} and ended {self.state}{since}"
        if self.state is None:
            return f"{who} held {target.label}, but that run no longer exists"
        return f"{who} is changing {target.label} (it is {self.state}{since}; it took the lock at " \
               f"{self.holder.since:%H:%M:%S} UTC)"


@contextmanager
def target_lock(target: Target, *, wait_seconds: float, runbook: str, run_id: UUID | None) -> Iterator[Holder]:
    """Hold the only slot for `target` while the body runs, so two runs never change it at once.

    Raises:
        GuardRefused: the holder waits at its approval gate, or the slot did not free up within
            `wait_seconds`; the message names the holder and what it is doing. Errors raised by the body
            pass through unchanged, and the slot is released either way.
    """
    name = lock_name(target.key)
    with get_client(sync_client=True) as client:
        lease_id = _acquire(client, name, target, wait_seconds, run_id)
        holder = Holder(run=str(run_id or "-"), runbook=runbook, lease_id=str(lease_id),
                        since=dt.datetime.now(dt.timezone.utc))
        _record_holder(client, target, holder, run_id)
    run_logger().info("lock %s on %s taken by run %s", name, target.label, holder.run)
    renewer = _Renewer(lease_id)
    renewer.start()
    try:
        yield holder
    finally:
        renewer.stop()
        _release(name, lease_id, renewer.lease_lost_safely())
        run_logger().info("lock %s on %s released by run %s", name, target.label, holder.run)


def _ensure_limit(client, name: str) -> None:
    """Create the limit (limit 1) if missing: without it nothing would lock at all. One that exists but
    was loosened or disabled is refused: a lock that silently admits two mutators is worse than none."""
    try:
        existing = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return
        except ObjectAlreadyExists:
            existing = client.read_global_concurrency_limit_by_name(name)
    if existing.limit != 1 or not existing.active:
        raise GuardRefused(
            f"lock {name} is {'active' if existing.active else 'inactive'} with limit {existing.limit}; "
            f"it must be active with limit 1 (fix: prefect gcl update {name} --enable --limit 1)")


def _acquire(client, name: str, target: Target, wait_seconds: float, run_id: UUID | None) -> UUID:
    deadline = time.monotonic() + wait_seconds
    holder_run = ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None
    freeing = 0          # 1: the stale holder's lease was released; 2: its slot was also decremented
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=LEASE_SECONDS, holder=holder_run)
            granted = response.json()
            limits = granted.get("limits") or []
            if len(limits) == 1 and limits[0].get("limit") == 1:
                return UUID(granted["lease_id"])
            # No such active limit (first run on this object), or a loosened one: a lease on it locks
            # nothing. Give it back, make sure the limit exists as it must, and try again.
            client.release_concurrency_slots_with_lease(UUID(granted["lease_id"]))
            _ensure_limit(client, name)
            continue
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:      # 423 Locked: the slot is taken
                raise
        held = held_by(client, target)
        if held.paused:
            raise GuardRefused(held.describe(target))
        if (held.final or (held.holder and held.state is None)) and freeing < 2:
            freeing += 1
            _free_stale(client, name, target, held, by_lease=freeing == 1)
            continue
        if time.monotonic() >= deadline:
            raise GuardRefused(f"{held.describe(target)}; waited {wait_seconds:g} s for lock {name}, try again "
                               "when it finishes")
        time.sleep(POLL_SECONDS)


def held_by(client, target: Target) -> HeldBy:
    """The recorded holder of the target's lock and the state of its flow run."""
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[holder_record_key(target.key)])),
        sort=ArtifactSort.CREATED_DESC, limit=1)
    if not artifacts or not artifacts[0].metadata_:
        return HeldBy(holder=None)
    try:
        holder = Holder.model_validate(artifacts[0].metadata_)
        run = client.read_flow_run(UUID(holder.run))
    except ObjectNotFound:
        return HeldBy(holder=holder)
    except (ValueError, TypeError):
        return HeldBy(holder=None)
    state = run.state
    return HeldBy(holder=holder, state=state.name if state else "unknown", state_since=state.timestamp if state else None,
                  paused=bool(state and state.is_paused()), final=bool(state and state.is_final()))


def _free_stale(client, name: str, target: Target, held: HeldBy, *, by_lease: bool) -> None:
    """Free the slot of a holder whose run has ended: first through its lease (a no-op if the server no
    longer knows it); if the slot is still taken after that, the server lost the lease: one decrement."""
    if by_lease:
        client.release_concurrency_slots_with_lease(UUID(held.holder.lease_id))
        how = "its lease"
    else:
        client.release_concurrency_slots(names=[name], slots=1, occupancy_seconds=1.0)
        how = "one decrement (the server had lost its lease)"
    run_logger().warning("freed lock %s on %s, still held by %s, through %s", name, target.label,
                         held.describe(target), how)


def _record_holder(client, target: Target, holder: Holder, run_id: UUID | None) -> None:
    client.create_artifact(ArtifactCreate(
        key=holder_record_key(target.key), type="markdown", flow_run_id=run_id,
        data=f"Run `{holder.run}` ({holder.runbook}) took the lock on {target.resource} at {holder.since.isoformat()}.",
        description=f"Who holds the runbooks' lock on {target.resource}; the newest version is the holder.",
        metadata_={"run": holder.run, "runbook": holder.runbook, "lease_id": holder.lease_id,
                   "since": holder.since.isoformat()}))


class _Renewer:
    """Renews the lease in the background while the holder lives; notes when renewal last worked."""

    def __init__(self, lease_id: UUID) -> None:
        self.lease_id = lease_id
        self.stopped = threading.Event()
        self.last_renewed = time.monotonic()
        self.lost = False
        self.lost_after: float | None = None     # seconds since the last good renewal when the loss was seen
        self.thread = threading.Thread(target=self._loop, name=f"lock-lease-{lease_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def lease_lost_safely(self) -> bool:
        """True when the server lost the lease while renewals kept working (a restart with in-memory
        leases): the slot is still counted, no repossessor will free it, so a plain decrement is right."""
        return self.lost_after is not None and self.lost_after < LEASE_SECONDS

    def _loop(self) -> None:
        with get_client(sync_client=True) as client:
            while not self.stopped.wait(RENEW_EVERY_SECONDS):
                try:
                    client.renew_concurrency_lease(self.lease_id, lease_duration=LEASE_SECONDS)
                    self.last_renewed = time.monotonic()
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code == 410 and not self.lost:
                        self.lost = True
                        self.lost_after = time.monotonic() - self.last_renewed
                        run_logger().warning("lease %s is unknown to the Prefect server (restarted?); the slot "
                                             "is released by name at the end", self.lease_id)
                except httpx.HTTPError:
                    pass                               # the server is restarting: try again next round


def _release(name: str, lease_id: UUID, lease_lost_safely: bool) -> None:
    """Release through the lease; if the server lost the lease (a restart with in-memory leases) while our
    renewals worked, the slot is still counted and nothing else will free it: one plain decrement."""
    with get_client(sync_client=True) as client:
        if lease_lost_safely:
            client.release_concurrency_slots(names=[name], slots=1, occupancy_seconds=1.0)
        else:
            client.release_concurrency_slots_with_lease(lease_id)
