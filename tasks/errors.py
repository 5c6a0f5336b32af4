"""One error taxonomy for every runbook, mapped from SDK exceptions in one place (`classify`)."""
from __future__ import annotations

import json


class RunbookError(Exception):
    """Base of every error a runbook raises on purpose."""


class TransientError(RunbookError):
    """Worth retrying: 429, 5xx, a dropped connection. `retry_after` honours the server's Retry-After."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(RunbookError):
    """Retrying will not help: 4xx other than 404/409/429, invalid input."""


class TargetNotFound(RunbookError):
    """The thing to act on does not exist (unknown service, environment, revision, or a 404)."""


class ConflictError(RunbookError):
    """Someone else changed the object since we read it (409)."""


class CatalogError(RunbookError):
    """catalog.yaml is missing or invalid."""


class VerificationFailed(RunbookError):
    """The change was made but its outcome could not be proven within the deadline."""


class ApprovalRejected(RunbookError):
    """A human said no, the gate timed out, or the answer did not count."""


class GuardRefused(RunbookError):
    """A guard (freeze window, lock, cooldown) refused the run before any change."""


def classify(exc: BaseException) -> BaseException:
    """Map an SDK exception to the taxonomy (cause chained by the caller with `raise ... from exc`)."""
    from kubernetes.client.exceptions import ApiException
    import urllib3.exceptions

    if isinstance(exc, RunbookError):
        return exc
    if isinstance(exc, ApiException):
        reason = _status_message(exc)
        if exc.status == 429 or (exc.status or 0) >= 500:
            retry_after = _retry_after(exc)
            return TransientError(f"API {exc.status}: {reason}", retry_after)
        if exc.status == 404:
            return TargetNotFound(reason)
        if exc.status == 409:
            return ConflictError(reason)
        return PermanentError(f"API {exc.status}: {reason}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return TransientError(f"connection problem: {exc}")
    return exc


def is_transient(exc: BaseException) -> bool:
    return isinstance(classify(exc), TransientError)


def _status_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _retry_after(exc) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
