"""One error taxonomy for every API the runbooks call, mapped in one place (`classify`).

Kubernetes (`ApiException`), Azure (`azure.core.exceptions`, with ARM's error code), GitHub (PyGithub's
`GithubException` family) and the Prefect client (httpx and `prefect.exceptions`) all map onto the same
few classes, so retry policy and outcomes are decided once: transient errors are retried (honouring
Retry-After, or GitHub's rate-limit reset, capped), everything else is raised with its cause chained.
"""
from __future__ import annotations

import json
import time
from typing import Any

MAX_RETRY_AFTER = 60.0     # a rate limit that resets later than this is not worth waiting for in a run


class RunbookError(Exception):
    """Base of every error a runbook raises on purpose."""


class TransientError(RunbookError):
    """Worth retrying: 429, 5xx, a dropped connection. `retry_after` honours the server's Retry-After.

    `rate_limit`: GitHub's rate limit; `retry_after` is then the whole wait (until its reset, or its
    Retry-After), at most MAX_RETRY_AFTER: a limit that resets later is a PermanentError for the run."""

    def __init__(self, message: str, retry_after: float | None = None, *, rate_limit: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limit = rate_limit


class PermanentError(RunbookError):
    """Retrying will not help: a 4xx other than 404/409/412/429, invalid input, a refused request."""


class AccessDenied(PermanentError):
    """The credentials were refused or lack a permission (401, 403 that is not a rate limit): fix access, not the run."""


class TargetNotFound(RunbookError):
    """The thing to act on does not exist (unknown service, environment, revision, or a 404)."""


class ConflictError(RunbookError):
    """Someone else changed the object, or another operation on it is in flight (409, 412)."""


class OperationFailed(PermanentError):
    """An Azure long-running operation ended Failed or Canceled after its write was accepted; `code` is ARM's
    error code (QuotaExceeded, PodDrainFailure, ...). The write may be partly in place: undo it."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class CatalogError(RunbookError):
    """The catalog is missing or invalid."""


class VerificationFailed(RunbookError):
    """The change was made but its outcome could not be proven within the deadline."""


class ApprovalRejected(RunbookError):
    """A human said no at the approval gate."""


class ApprovalTimedOut(ApprovalRejected):
    """Nobody answered the approval gate in time (a rejection by the clock)."""


class GuardRefused(RunbookError):
    """A guard (freeze window, lock, cooldown) refused the run before any change."""


class UndoFailed(RunbookError):
    """Undoing a change failed: the target is in neither the old nor the new state."""


def classify(exc: BaseException) -> BaseException:
    """Map an SDK exception to the taxonomy (cause chained by the caller with `raise ... from exc`).

    Anything unknown is returned unchanged, so a bug stays a bug and is never retried.
    """
    if isinstance(exc, RunbookError):
        return exc
    for mapper in (_kubernetes, _azure, _github, _prefect, _network):
        mapped = mapper(exc)
        if mapped is not None:
            return mapped
    return exc


def is_transient(exc: BaseException) -> bool:
    return isinstance(classify(exc), TransientError)


def _by_status(status: int, message: str, retry_after: float | None = None) -> RunbookError:
    if status == 429 or status >= 500:
        return TransientError(message, retry_after)
    if status == 404:
        return TargetNotFound(message)
    if status in (409, 412):
        return ConflictError(message)
    if status in (401, 403):
        return AccessDenied(message)
    return PermanentError(message)


def _kubernetes(exc: BaseException) -> RunbookError | None:
    from kubernetes.client.exceptions import ApiException
    if not isinstance(exc, ApiException):
        return None
    reason = _status_message(exc)
    return _by_status(exc.status or 0, f"Kubernetes API {exc.status}: {reason}", _retry_after(exc.headers))


def _azure(exc: BaseException) -> RunbookError | None:
    from azure.core import exceptions as az
    if isinstance(exc, az.ClientAuthenticationError):
        return AccessDenied(f"Azure refused the credentials: {_azure_message(exc)}")
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError)):
        return TransientError(f"Azure connection problem: {exc}")
    if not isinstance(exc, az.HttpResponseError):
        return None
    status = exc.status_code or 0
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    message = f"Azure {status} {code}: {_azure_message(exc)}".replace("  ", " ")
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if status == 409 and code not in ("OperationNotAllowed", "Conflict", "EtagMismatch", ""):
        return PermanentError(message)        # e.g. a 409 for a request AKS will never accept
    return _by_status(status, message, _retry_after(headers))


def _github(exc: BaseException) -> RunbookError | None:
    try:
        from github import GithubException, RateLimitExceededException
    except ImportError:  # pragma: no cover - PyGithub is a dependency
        return None
    if not isinstance(exc, GithubException):
        return None
    headers = exc.headers or {}
    message = f"GitHub {exc.status}: {_github_message(exc)}"
    remaining = str(_header(headers, "x-ratelimit-remaining") or "")
    if isinstance(exc, RateLimitExceededException) or (exc.status in (403, 429) and (
            remaining == "0" or _header(headers, "retry-after") is not None)):
        wait = _seconds(_header(headers, "retry-after"))           # uncapped here: the cap is decided below
        if wait is None and _header(headers, "x-ratelimit-reset"):
            wait = max(0.0, float(_header(headers, "x-ratelimit-reset")) - time.time() + 1)  # +1: reset within its second
        if wait is not None and wait > MAX_RETRY_AFTER:
            return PermanentError(f"{message}: rate limit resets in {wait:.0f}s, later than the {MAX_RETRY_AFTER:.0f}s "
                                  "a run waits; run again after the reset")
        return TransientError(f"{message} (rate limited)", wait if wait is not None else 1.0, rate_limit=True)
    return _by_status(exc.status or 0, message)


def _prefect(exc: BaseException) -> RunbookError | None:
    import httpx
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    if isinstance(exc, ObjectNotFound):
        return TargetNotFound(f"Prefect API: {exc}")
    if isinstance(exc, ObjectAlreadyExists):
        return ConflictError(f"Prefect API: {exc}")
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return _by_status(response.status_code, f"Prefect API {response.status_code} for "
                                                 f"{exc.request.method} {exc.request.url.path}",
                          _retry_after(response.headers))
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"Prefect API unreachable: {type(exc).__name__}: {exc}")
    return None


def _network(exc: BaseException) -> RunbookError | None:
    import urllib3.exceptions
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return TransientError(f"connection problem: {exc}")
    return None


def _header(headers: Any, name: str) -> Any:
    if not headers or not hasattr(headers, "get"):
        return None
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return value


def _retry_after(headers: Any) -> float | None:
    seconds = _seconds(_header(headers, "retry-after"))
    return min(MAX_RETRY_AFTER, seconds) if seconds is not None else None


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _status_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _azure_message(exc) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "message", None) or getattr(exc, "message", None) or exc).splitlines()[0]


def _github_message(exc) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    return str(data.get("message") or exc.data or "")
