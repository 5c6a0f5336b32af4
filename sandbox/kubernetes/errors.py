"""API errors shaped like the real kube-apiserver's `Status` objects."""
from __future__ import annotations

from typing import Any

from ..common.errors import HttpError


class ApiError(HttpError):
    """An error answered to the client as a `meta/v1 Status` with the real server's code and reason."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, reason, message, headers=headers)
        self.details = details

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A failure Status with its fields in the order the real server writes them (metav1.Status:
    kind, apiVersion, metadata, status, message, reason, details, code)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason}
    if details:
        body["details"] = ordered_details(details)
    body["code"] = code
    return body


# metav1.StatusDetails field order
_DETAIL_ORDER = ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")


def ordered_details(details: dict[str, Any]) -> dict[str, Any]:
    return {key: details[key] for key in sorted(details, key=lambda k: (
        _DETAIL_ORDER.index(k) if k in _DETAIL_ORDER else len(_DETAIL_ORDER)))}


def from_http_error(error: HttpError) -> ApiError:
    """A shared-layer error (admin endpoints, request size, authentication) as a Status-carrying ApiError."""
    if isinstance(error, ApiError):
        return error
    return ApiError(error.code, error.reason, error.message, headers=dict(error.headers))


def _details(kind: str, name: str | None, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', details=_details(plural, name, group))


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(409, "AlreadyExists", f'{qualified} "{name}" already exists',
                    details=_details(plural, name, group))


def conflict(plural: str, name: str, group: str = "", why: str = "") -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
                    details=_details(plural, name, group))


def invalid(kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> ApiError:
    """422 Invalid. `causes` are (field, message) pairs, e.g. ("spec.replicas", "Invalid value: -1: must be ...")."""
    qualified = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    message = f'{qualified} "{name}" is invalid: {text}' if causes else f'{qualified} "{name}" is invalid'
    details = _details(kind, name, group)
    details["causes"] = [{"reason": _cause_reason(msg), "message": msg, "field": field} for field, msg in causes]
    return ApiError(422, "Invalid", message, details=details)


# field.ErrorType -> the CauseType the real server puts in Status.details.causes[].reason
_CAUSE_REASONS = (("Required value", "FieldValueRequired"), ("Duplicate value", "FieldValueDuplicate"),
                  ("Forbidden", "FieldValueForbidden"), ("Unsupported value", "FieldValueNotSupported"),
                  ("Too long", "FieldValueTooLong"), ("Too many", "FieldValueTooMany"),
                  ("Not found", "FieldValueNotFound"), ("Internal error", "InternalError"))


def _cause_reason(message: str) -> str:
    return next((reason for prefix, reason in _CAUSE_REASONS if message.startswith(prefix)), "FieldValueInvalid")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def too_many_requests(message: str, retry_after: int | None = None, details: dict[str, Any] | None = None) -> ApiError:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if retry_after is not None:
        details = dict(details or {})
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, "TooManyRequests", message, details=details, headers=headers)


def internal_error(message: str = "an error on the server has prevented the request from succeeding") -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str = "the server is currently unable to handle the request") -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)
