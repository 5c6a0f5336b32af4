"""Guards checked in preflight, for every trigger alike (UI, schedule, alert): freeze windows, one
mutator per target, and a cooldown after a completed change.

Every refusal is a `GuardRefused` raised before the first write, with a message an operator can act on.
Locks and cooldown records live in the Prefect server (a global concurrency limit and a keyed artifact
per target), so they hold across processes, workers and machines that share that server.

Lock names and record keys come from `Target.key` with everything outside `[a-z0-9-]` turned into `-`.
Two keys that sanitise alike (`a-b/c` and `a/b-c`) share a lock and a cooldown record: that only ever
refuses more, never less, because records are written in completion order and the newest one wins.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from contextlib import ExitStack, contextmanager
from typing import Iterator
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

from .catalog import Environment
from .errors import GuardRefused
from .models import Target

log = logging.getLogger(__name__)

# A crashed holder's slot frees after this long; a live holder renews it in the background.
LEASE_SECONDS = 60


# --- freeze windows ------------------------------------------------------------------------------

def check_freeze(environment_name: str, environment: Environment, *, now: dt.datetime,
                 emergency_override: str | None) -> str | None:
    """Refuse a change inside a freeze window unless the operator gives a reason to override it.

    Pure, so a flow can call it with the run's start time and tests need no server.

    Returns:
        None outside every window; inside one with an override, the note to record in the run report.

    Raises:
        GuardRefused: inside a window with no override (None or blank).
    """
    now = _as_utc(now)
    window = next((w for w in environment.freeze_windows if w.covers(now)), None)
    if window is None:
        return None
    span = f"{_fmt(window.start)}-{_fmt(window.end)} UTC"
    reason = (emergency_override or "").strip()
    if not reason:
        raise GuardRefused(
            f"environment {environment_name!r} is in a freeze window {span} ({window.reason}); "
            "to change it anyway, pass emergency_override with a reason")
    return f"freeze window {span} ({window.reason}) overridden: {reason}"


# --- per-target lock -----------------------------------------------------------------------------

def lock_name(target: Target) -> str:
    """The global concurrency limit that serialises mutators of `target`."""
    return f"runbook-target-{_sanitise(target.key)}"


@contextmanager
def target_lock(target: Target, *, wait_seconds: float, holder: str) -> Iterator[None]:
    """Hold the only slot for `target` while the body runs, so two runs never change it at once.

    Waits up to `wait_seconds` (> 0) for a run already holding it. `holder` (a run id or name) is only
    logged; inside a flow run the lease is also tagged with that run so the Prefect UI shows who holds it.

    Raises:
        GuardRefused: the slot did not free up in time (cause: Prefect's TimeoutError). Errors raised
            by the body pass through unchanged, and the slot is released either way.
    """
    name = lock_name(target)
    _ensure_limit(name)
    with _slot(name, target, wait_seconds):
        _logger().info("lock %s acquired by %s", name, holder)
        try:
            yield
        finally:
            _logger().info("lock %s released by %s", name, holder)


def _ensure_limit(name: str) -> None:
    """Create the limit (limit 1) if missing: without it `concurrency` would not lock at all.

    A 409 means it exists (another run created it first); then check nobody loosened or disabled it,
    because a lock that silently admits two mutators is worse than a refusal.
    """
    with get_client(sync_client=True) as client:
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


@contextmanager
def _slot(name: str, target: Target, wait_seconds: float) -> Iterator[None]:
    """Acquire the slot; only a timeout while *acquiring* becomes a refusal, never one from the body."""
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(name, occupy=1, strict=True, timeout_seconds=wait_seconds,
                                            lease_duration=LEASE_SECONDS, holder=_lease_holder()))
        except TimeoutError as exc:
            raise GuardRefused(
                f"another run is changing {target.key}; try again when it finishes "
                f"(waited {wait_seconds:g} s for lock {name})") from exc
        yield


def _lease_holder() -> ConcurrencyLeaseHolder | None:
    run_id = _current_flow_run_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None


# --- cooldown ------------------------------------------------------------------------------------

def cooldown_record_key(target: Target) -> str:
    """The artifact key under which every completed change on the target is recorded."""
    return f"runbook-last-change-{_sanitise(target.key)}"


def check_cooldown(target: Target, *, cooldown_seconds: int, now: dt.datetime) -> None:
    """Refuse a run too soon after the last completed change, so an alert storm or an impatient
    operator cannot stack changes on a service that has not settled yet.

    A cooldown of 0 never refuses (and does not read the record).

    Raises:
        GuardRefused: the last change is within `cooldown_seconds` of `now`, or its record is unreadable
            (fail closed: delete that artifact in the Prefect UI, or record a valid change).
    """
    if cooldown_seconds <= 0:
        return
    key = cooldown_record_key(target)
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])), limit=1)
    if not latest:
        return
    record = latest[0].metadata_
    try:
        run, at = str(record["run"]), _as_utc(dt.datetime.fromisoformat(record["at"]))
    except (TypeError, KeyError, ValueError) as exc:
        raise GuardRefused(f"cooldown record {key} (its latest artifact) is unreadable ({record!r}); "
                           "delete that artifact or record a valid change") from exc
    until = at + dt.timedelta(seconds=cooldown_seconds)
    if _as_utc(now) < until:
        raise GuardRefused(
            f"{target.service} in {target.environment} was changed by run {run} at {at.isoformat()}; "
            f"cooldown of {cooldown_seconds} s until {until.isoformat()}")


def record_change(target: Target, *, run: str, at: dt.datetime) -> None:
    """Record a completed change on `target` for `check_cooldown`: the newest record is the one read.

    The flow calls this only after a change was made (succeeded, or rolled back after being made):
    a dry run or a no-op run changed nothing, so it must not start a cooldown.

    Each change is a new version of a keyed artifact, so the Prefect UI keeps the target's change history.
    Appending is a single insert: updating a Variable in place reads then writes, which SQLite refuses
    while another writer commits (a 503, then Prefect's client waits 2 s to retry).
    """
    at_text = _as_utc(at).isoformat()
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key=cooldown_record_key(target), type="markdown",
            data=f"`{target.key}` was changed by run `{run}` at {at_text}.",
            description=f"Completed changes on {target.key}; the runbooks' cooldown guard reads the newest.",
            metadata_={"run": run, "at": at_text},
            flow_run_id=_current_flow_run_id()))
    _logger().info("recorded change on %s by run %s at %s", target.key, run, at_text)


# --- helpers -------------------------------------------------------------------------------------

def _current_flow_run_id() -> UUID | None:
    """The flow run this code runs in, if any (the guards also work outside a flow, e.g. in tests)."""
    ctx = FlowRunContext.get()
    return ctx.flow_run.id if ctx is not None and ctx.flow_run is not None else None


def _sanitise(key: str) -> str:
    """Fit a target key into both naming rules: limits ban `/%&><`, artifact keys allow `[a-z0-9-]`."""
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def _as_utc(moment: dt.datetime) -> dt.datetime:
    """Treat naive datetimes as UTC (as `FreezeWindow.covers` does), so comparisons never raise."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _fmt(moment: dt.datetime) -> str:
    return _as_utc(moment).strftime("%Y-%m-%d %H:%M")


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run logger inside a flow or task (so lock holders show in the UI), else the module logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log
