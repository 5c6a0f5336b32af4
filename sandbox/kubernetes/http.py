"""The Kubernetes API over the shared HTTP layer: routing to the REST semantics, server-side tables, watch
streaming, discovery and OpenAPI documents, and errors as `Status` objects."""
from __future__ import annotations

import json
import queue
import time
from typing import TYPE_CHECKING, Any

from ..common.errors import HttpError
from ..common.faults import Fault
from ..common.http import Handler, Request
from . import discovery, errors, openapi_v2
from .api import Response, WatchStream
from .routing import k8s_verb, parse_resource_path
from .tables import table, wants_table

if TYPE_CHECKING:
    from .server import Sandbox

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
NOT_FOUND = "the server could not find the requested resource"


class Encoder:
    """JSON as the real server writes it (compact, one trailing newline), with a cache of stored objects'
    bytes: a stored object never changes under the same (uid, resourceVersion), so a LIST joins cached
    encodings instead of re-serialising every item."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], bytes] = {}

    def encode(self, body: Any) -> bytes:
        items = body.get("items") if isinstance(body, dict) and body.get("kind", "").endswith("List") else None
        if not isinstance(items, list):
            return json.dumps(body, separators=(",", ":")).encode() + b"\n"
        head = json.dumps({k: v for k, v in body.items() if k != "items"}, separators=(",", ":")).encode()
        return head[:-1] + b',"items":[' + b",".join(self.item(o) for o in items) + b"]}\n"

    def item(self, obj: dict) -> bytes:
        meta = obj.get("metadata") or {}
        key = (meta.get("uid", ""), meta.get("resourceVersion", ""))
        if not key[0]:
            return json.dumps(obj, separators=(",", ":")).encode()
        data = self._cache.get(key)
        if data is None:
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
            data = self._cache[key] = json.dumps(obj, separators=(",", ":")).encode()
        return data


def verb(request: Request) -> str:
    """The Kubernetes verb (as audit logs and RBAC name it); the parsed target is kept for `serve`."""
    target = parse_resource_path(request.path)
    request.state["target"] = target
    return k8s_verb(request.method, target, request.flag("watch"))


def serve(sandbox: "Sandbox", request: Request, responder: Handler) -> int:
    target = request.state.get("target")
    if target is not None:
        result = sandbox.api.handle(request, target)
        as_table = wants_table(request.headers.get("Accept", "")) and target.subresource is None
        if isinstance(result, WatchStream):
            return stream_watch(sandbox, responder, result, request.fault, as_table)
        if as_table and request.method == "GET" and result.status == 200:
            body = result.body
            listed = target.name is None
            result = Response(200, table(target.resource, body["items"] if listed else [body],
                                         body["metadata"] if listed else {}))
        return send(responder, result)
    if request.method != "GET":
        raise errors.method_not_allowed()
    if request.path == "/openapi/v2":
        return responder.send_bytes(200, openapi_v2.document(), openapi_v2.MEDIA_TYPE)
    doc = static_document(request.path)
    if doc is None:
        raise errors.ApiError(404, "NotFound", NOT_FOUND)
    if isinstance(doc, str):
        return responder.send_bytes(200, doc.encode(), "text/plain")
    return responder.send_json(200, doc)


def send(responder: Handler, response: Response) -> int:
    if response.content_type == "application/json":
        return responder.send_json(response.status, response.body, response.headers)
    data = response.body.encode() if isinstance(response.body, str) else response.body
    return responder.send_bytes(response.status, data, response.content_type, response.headers)


def render_error(sandbox: "Sandbox", error: HttpError) -> tuple[int, bytes, str, dict[str, str]]:
    api_error = errors.from_http_error(error)
    return api_error.code, sandbox.encoder.encode(api_error.status()), "application/json", dict(api_error.headers)


def fault_error(fault: Fault) -> errors.ApiError:
    """The Status the real server answers for the injected code: 429 with Retry-After and
    details.retryAfterSeconds, 5xx with the real messages."""
    code = fault.status or 500
    if code == 429:
        return errors.too_many_requests("Too many requests, please try again later.", fault.retry_after or 1)
    if code == 503:
        error = errors.service_unavailable()
    elif code == 500:
        error = errors.internal_error()
    elif code == 504:
        error = errors.ApiError(504, "Timeout", "The server was unable to return a response in the time allotted, "
                                                "but may still be processing the request")
    else:
        error = errors.ApiError(code, "InternalError" if code >= 500 else "BadRequest", f"injected fault {code}")
    if fault.retry_after is not None:
        error.headers["Retry-After"] = str(fault.retry_after)
    return error


# -- watch -----------------------------------------------------------------------------------------

def stream_watch(sandbox: "Sandbox", responder: Handler, stream: WatchStream, fault: Fault | None,
                 as_table: bool = False) -> int:
    """Send watch events as chunked JSON lines until the timeout, a cut fault, or shutdown."""
    responder.start_stream("application/json")
    now = time.monotonic()
    deadline = now + stream.timeout
    cut_at = now + fault.cut_watch_after if fault and fault.cut_watch_after is not None else None
    every = sandbox.config.bookmark_seconds
    next_bookmark = now + every
    ended_by_error = False
    try:
        while not sandbox.stopping.is_set():
            now = time.monotonic()
            if cut_at is not None and now >= cut_at:
                responder.cut()                            # mid-stream, no terminating chunk
                return 200
            if now >= deadline:
                break
            item = _next_event(stream, min(deadline, next_bookmark, cut_at or deadline) - now)
            if item is None:
                break
            if item and item[0] == "ERROR":               # e.g. 410 Expired: the stream's last event
                _event(responder, {"type": "ERROR", "object": item[1]})
                ended_by_error = True
                break
            if item:
                _event(responder, {"type": item[0], "object": table(stream.resource, [item[1]]) if as_table
                                   else item[1]})
            if stream.bookmarks and time.monotonic() >= next_bookmark and _bookmark(sandbox, responder, stream):
                next_bookmark = time.monotonic() + every
        if stream.bookmarks and not ended_by_error:
            _bookmark(sandbox, responder, stream)
        responder.end_stream()
    except (ConnectionError, BrokenPipeError, OSError):
        responder.close_connection = True
    finally:
        stream.watcher.close()
    return 200


def _next_event(stream: WatchStream, wait: float) -> tuple | None:
    try:
        return stream.watcher.events.get(timeout=max(0.01, min(wait, 0.5)))
    except queue.Empty:
        return ()


def _event(responder: Handler, event: dict) -> None:
    responder.send_chunk(json.dumps(event, separators=(",", ":")).encode() + b"\n")


def _bookmark(sandbox: "Sandbox", responder: Handler, stream: WatchStream) -> bool:
    """Send a BOOKMARK at the current version, unless events are still queued for this stream: a bookmark
    must not claim a version past an event the client has not been sent yet (it would resume after it)."""
    store = sandbox.store
    with store.lock:                       # events are queued under this lock, so the check is exact
        if not stream.watcher.events.empty():
            return False
        rv = str(store.resource_version)
    _event(responder, {"type": "BOOKMARK", "object": {"kind": stream.resource.kind,
                                                      "apiVersion": stream.resource.api_version,
                                                      "metadata": {"resourceVersion": rv}}})
    return True


# -- discovery -------------------------------------------------------------------------------------

def static_document(path: str) -> Any:
    path = path.rstrip("/") or "/"
    if path in HEALTH_PATHS:
        return "ok"
    if path == "/version":
        return discovery.KUBERNETES_VERSION
    if path == "/api":
        return discovery.core_versions()
    if path == "/apis":
        return discovery.group_list()
    if path == "/openapi/v3":
        return discovery.openapi_root()
    if path.startswith("/openapi/v3/"):
        return discovery.openapi_group(path[len("/openapi/v3/"):])
    parts = path.strip("/").split("/")
    if parts == ["api", "v1"]:
        return discovery.resource_list("", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        return discovery.group_detail(parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return discovery.resource_list(parts[1], parts[2])
    return None
