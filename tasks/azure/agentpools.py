"""AKS agent pools: read them, change a pool's count or its autoscaler bounds, wait for the operation.

Every write is GET, change, PUT of the whole pool with `If-Match` on the eTag just read: a PUT replaces the
pool (AKS has no PATCH), so a write based on a stale read could roll back a node image or restart a
stopped pool; with If-Match, AKS answers 412 instead. The write returns as soon as ARM accepts it, with
what its undo needs (the previous settings) and the operation to wait for (`wait_for_pool_operation`).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prefect import task
from pydantic import BaseModel, Field, PrivateAttr

from plans.pools import PoolSettings, PoolState, pool_state

from ..calls import TASK_RETRIES, call, retry_if_transient
from ..clients import ARM_POLLING_SECONDS
from ..errors import ConflictError, OperationFailed, TargetNotFound

if TYPE_CHECKING:
    from azure.mgmt.containerservice import ContainerServiceClient


class PoolWrite(BaseModel):
    """What a pool write did: `previous` is what its undo puts back; `operation` resumes its wait."""
    pool: str
    changed: bool
    dry_run: bool = False
    previous: PoolSettings
    requested: PoolSettings
    e_tag: str | None = None
    operation: str | None = Field(None, exclude=True, repr=False)   # the LRO's continuation token
    _poller: Any = PrivateAttr(None)                                 # the SDK's poller, already following it

    def take_poller(self) -> Any:
        """The poller the write started (once: a retried wait resumes from `operation` instead)."""
        poller, self._poller = self._poller, None
        return poller


@task(name="list_agent_pools", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def list_agent_pools(client: "ContainerServiceClient", *, resource_group: str, cluster: str) -> list[PoolState]:
    """Every agent pool of the cluster."""
    return [pool_state(p.as_dict()) for p in call(lambda: list(client.agent_pools.list(resource_group, cluster)))]


@task(name="get_agent_pool", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def get_agent_pool(client: "ContainerServiceClient", *, resource_group: str, cluster: str, pool: str) -> PoolState:
    """One agent pool; a missing one is named with the pools that exist."""
    return pool_state(_read(client, resource_group, cluster, pool).as_dict())


@task(name="scale_agent_pool", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def scale_agent_pool(client: "ContainerServiceClient", *, resource_group: str, cluster: str, pool: str, count: int,
                     expected: PoolSettings | None = None, dry_run: bool = False) -> PoolWrite:
    """Set a pool's node count (autoscaler off), as `az aks nodepool scale` does. Idempotent; refuses a pool
    that changed since `expected` was read (the plan's view)."""
    return _write(client, resource_group, cluster, pool, lambda now: PoolSettings(count=count), expected, dry_run)


@task(name="set_pool_autoscaler", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def set_pool_autoscaler(client: "ContainerServiceClient", *, resource_group: str, cluster: str, pool: str,
                        min_count: int, max_count: int, expected: PoolSettings | None = None,
                        dry_run: bool = False) -> PoolWrite:
    """Turn the pool's cluster autoscaler on with these bounds (the count, which AKS requires, is kept and
    brought within them), as `az aks nodepool update --enable-cluster-autoscaler` / `--update-...` do."""
    def bounded(now: PoolSettings) -> PoolSettings:
        return PoolSettings(count=min(max(now.count, min_count), max_count), enable_auto_scaling=True,
                            min_count=min_count, max_count=max_count)
    return _write(client, resource_group, cluster, pool, bounded, expected, dry_run)


@task(name="restore_agent_pool", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def restore_agent_pool(client: "ContainerServiceClient", *, resource_group: str, cluster: str, write: PoolWrite,
                       poll_seconds: float = ARM_POLLING_SECONDS) -> PoolWrite:
    """Put back the settings a write replaced (its undo), once the write's own operation has ended (AKS
    refuses a write while one runs: 409 OperationNotAllowed)."""
    try:
        _wait(client, resource_group, cluster, write, poll_seconds)
    except OperationFailed:
        pass                        # a failed operation is what an undo repairs
    return _write(client, resource_group, cluster, write.pool, lambda now: write.previous, None, False)


def _read(client: "ContainerServiceClient", resource_group: str, cluster: str, pool: str):
    try:
        return call(client.agent_pools.get, resource_group, cluster, pool)
    except TargetNotFound as exc:
        names = [p.name for p in call(lambda: list(client.agent_pools.list(resource_group, cluster)))]
        raise TargetNotFound(f"agent pool {pool!r} not found in AKS cluster {resource_group}/{cluster}; "
                             f"allowed: {', '.join(sorted(names)) or '(none)'}") from exc


def _write(client: "ContainerServiceClient", resource_group: str, cluster: str, pool: str, change,
           expected: PoolSettings | None, dry_run: bool) -> PoolWrite:
    """GET, change, PUT the whole pool with If-Match on the eTag read."""
    from azure.core import MatchConditions
    model = _read(client, resource_group, cluster, pool)
    now = pool_state(model.as_dict())
    wanted = change(now.settings)
    if expected is not None and now.settings not in (expected, wanted):
        raise ConflictError(f"agent pool {pool} changed since the plan was made ({expected.describe()} -> "
                            f"{now.settings.describe()}); re-run to re-plan")
    result = PoolWrite(pool=pool, changed=False, dry_run=dry_run, previous=now.settings, requested=wanted,
                       e_tag=now.e_tag)
    if now.settings == wanted and expected not in (None, wanted) and not dry_run:
        return result.model_copy(update={"changed": True, "previous": expected})   # an earlier attempt landed
    if now.settings == wanted or dry_run:
        return result
    body = model.as_dict()
    body["properties"].update(wanted.properties())
    try:
        poller = call(client.agent_pools.begin_create_or_update, resource_group, cluster, pool, body,
                      etag=now.e_tag, match_condition=MatchConditions.IfNotModified)
    except ConflictError:
        # A retried PUT whose first attempt landed meets its own new eTag (412): check before failing.
        if pool_state(_read(client, resource_group, cluster, pool).as_dict()).settings == wanted:
            return result.model_copy(update={"changed": True})
        raise
    written = result.model_copy(update={"changed": True, "operation": poller.continuation_token()})
    written._poller = poller
    return written


@task(name="wait_for_pool_operation", retry_condition_fn=retry_if_transient, **TASK_RETRIES)
def wait_for_pool_operation(client: "ContainerServiceClient", *, resource_group: str, cluster: str,
                            write: PoolWrite, poll_seconds: float = ARM_POLLING_SECONDS) -> PoolState:
    """Wait for the operation a write started; its pool as it ended. A poll that fails transiently (429,
    5xx) resumes the same operation after Retry-After.

    Raises:
        OperationFailed: the operation ended Failed or Canceled (ARM's error code and message).
    """
    return _wait(client, resource_group, cluster, write, poll_seconds)


def _wait(client: "ContainerServiceClient", resource_group: str, cluster: str, write: PoolWrite,
          poll_seconds: float) -> PoolState:
    if write.operation is not None:
        return pool_state(call(_resume, client, resource_group, cluster, write).as_dict())
    while True:                    # no operation to follow (nothing written, or a retried PUT): poll the pool
        state = pool_state(_read(client, resource_group, cluster, write.pool).as_dict())
        if not state.busy:
            break
        time.sleep(poll_seconds)
    if write.changed and state.provisioning_state != "Succeeded":
        raise OperationFailed(f"agent pool {write.pool}: the operation ended {state.provisioning_state}",
                              state.provisioning_state)
    return state


def _resume(client: "ContainerServiceClient", resource_group: str, cluster: str, write: PoolWrite):
    """Follow the write's operation from its continuation token (so a failed poll can resume it)."""
    from azure.core.exceptions import HttpResponseError
    poller = write.take_poller() or client.agent_pools.begin_create_or_update(
        resource_group, cluster, write.pool, {}, continuation_token=write.operation)
    try:
        return poller.result()
    except HttpResponseError as exc:
        if exc.status_code is not None and 200 <= exc.status_code < 300:    # the accepted write's answer:
            code = getattr(exc.error, "code", "") or ""                      # the operation itself failed
            message = getattr(exc.error, "message", "") or str(exc)
            raise OperationFailed(f"agent pool {write.pool}: the operation ({write.previous.describe()} -> "
                                  f"{write.requested.describe()}) ended Failed: {code}: {message}", code) from exc
        raise
