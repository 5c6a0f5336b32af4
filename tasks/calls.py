"""Calling any API (Kubernetes, Azure, GitHub): transient errors retried in place (honouring Retry-After), others mapped
to the error taxonomy with their cause chained."""
from __future__ import annotations

import json
import logging
import time
from typing import Callable, TypeVar

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from .errors import TransientError, classify, is_transient

T = TypeVar("T")
log = logging.getLogger(__name__)

ATTEMPTS = 6
MAX_DELAY = 10.0

# For @task(...): Prefect retries a task only when its failure was transient; in-place retries come first.
# API calls are never cached (their inputs hold live clients, and their answers change).
TASK_RETRIES = dict(retries=2, retry_delay_seconds=exponential_backoff(1), retry_jitter_factor=0.5,
                    cache_policy=NO_CACHE)


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only transient failures (429, 5xx, dropped connections)."""
    try:
        state.result()
    except Exception as exc:  # the state's exception, re-raised by result()
        return is_transient(exc)
    return False


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's own logger inside a flow or task run (so retries show in the UI), else the module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def call(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run one API call; retry transient failures a few times, then raise from the taxonomy."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            mapped = classify(exc)
            if not isinstance(mapped, TransientError) or attempt == ATTEMPTS:
                if mapped is exc:
                    raise
                raise mapped from exc
            delay = min(MAX_DELAY, mapped.retry_after if mapped.retry_after is not None else 0.2 * 2 ** attempt)
            if getattr(mapped, "rate_limit", False):    # the whole wait until the reset (capped where mapped)
                delay = mapped.retry_after
            run_logger().warning("transient API error (%s); retry %d/%d in %.1fs", mapped, attempt, ATTEMPTS - 1,
                                 delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def call_json(fn: Callable[..., object], *args, **kwargs) -> dict:
    """Like `call`, but the response body as the server sent it (JSON), not a typed model: the typed
    models drop nulls and unknown fields, so a template read through them no longer equals the server's."""
    response = call(fn, *args, _preload_content=False, **kwargs)
    return json.loads(response.data)
