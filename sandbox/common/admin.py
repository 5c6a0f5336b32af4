"""The admin endpoints every stand-in serves under `/_sandbox/`: the request log and fault rules.
They are never logged and never faulted, so tests can inspect and steer a stand-in over HTTP."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import HttpError

if TYPE_CHECKING:
    from .http import Request
    from .standin import StandIn

PREFIX = "/_sandbox"
FAULT_FIELDS = frozenset({"verb", "path", "status", "retry_after", "latency", "drop", "cut_watch_after",
                          "probability", "times"})


def handle(service: "StandIn", request: "Request") -> tuple[int, Any]:
    """(status, JSON body) for an admin request; HttpError 400/404 for a bad one."""
    path, method = request.path.rstrip("/"), request.method
    if path == f"{PREFIX}/requests":
        if method == "GET":
            since = float(request.query.get("since") or 0)
            return 200, {"requests": [e.as_dict() for e in service.requests.entries(since)]}
        if method == "DELETE":
            service.requests.clear()
            return 200, {"cleared": True}
    if path == f"{PREFIX}/faults":
        if method == "GET":
            return 200, {"faults": [f.as_dict() for f in service.faults.rules()]}
        if method == "POST":
            return 201, _add_fault(service, request.body).as_dict()
        if method == "DELETE":
            service.faults.clear()
            return 200, {"cleared": True}
    if path.startswith(f"{PREFIX}/faults/") and method == "DELETE":
        if service.faults.remove(path.rsplit("/", 1)[-1]):
            return 200, {"removed": True}
        raise HttpError(404, "NotFound", "no such fault")
    answer = service.admin(request)
    if answer is not None:
        return answer
    raise HttpError(404, "NotFound", f"no sandbox endpoint {method} {path}")


def _add_fault(service: "StandIn", body: bytes):
    try:
        payload = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, "BadRequest", f"fault rule is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HttpError(400, "BadRequest", "fault rule must be a JSON object")
    unknown = set(payload) - FAULT_FIELDS
    if unknown:
        raise HttpError(400, "BadRequest", f"unknown fault fields: {sorted(unknown)}; allowed: {sorted(FAULT_FIELDS)}")
    try:
        return service.faults.add(**payload)
    except (TypeError, ValueError) as exc:
        raise HttpError(400, "BadRequest", str(exc)) from None
