"""The one error type the shared HTTP layer knows; each service renders it in its own shape."""
from __future__ import annotations

from http import HTTPStatus


class HttpError(Exception):
    """An error answer. `reason` is a short machine-readable word (e.g. "TooManyRequests"); the service's
    `render_error` hook turns it into a Kubernetes Status, an ARM error, a GitHub message, ..."""

    def __init__(self, code: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.headers = headers or {}


def reason_for(code: int) -> str:
    """A CamelCase reason for a status code ("TooManyRequests", "ServiceUnavailable")."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        return "InternalError" if code >= 500 else "BadRequest"
    return "".join(word.capitalize() for word in phrase.replace("-", " ").split())
