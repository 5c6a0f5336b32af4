"""The HTTP side: sockets, fault injection, the request log, watch streaming and admin endpoints."""
from __future__ import annotations

import hmac
import json
import queue
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import discovery, errors, openapi_v2
from .api import Request, Response, WatchStream
from .faults import Fault
from .requestlog import LoggedRequest, decode_body
from .routing import Target, k8s_verb, parse_resource_path
from .tables import table, wants_table

if TYPE_CHECKING:
    from .server import Sandbox

MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.encoder = Encoder()
        super().__init__(address, Handler)


class Encoder:
    """JSON encoding with a cache of stored objects' bytes: a stored object never changes under the same
    (uid, resourceVersion), so a LIST joins cached encodings instead of re-serialising every item."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], bytes] = {}

    def encode(self, body: Any) -> bytes:
        items = body.get("items") if isinstance(body, dict) and body.get("kind", "").endswith("List") else None
        if not isinstance(items, list):
            return json.dumps(body, separators=(",", ":")).encode()
        head = json.dumps({k: v for k, v in body.items() if k != "items"}, separators=(",", ":")).encode()
        return head[:-1] + b',"items":[' + b",".join(self.item(o) for o in items) + b"]}"

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer
    server_version = "kube-sandbox"
    _record: Any = None              # the current request's log hook (see _serve)
    disable_nagle_algorithm = True   # headers and body go out as separate writes: avoid a 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr chatter
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- one request -------------------------------------------------------------------------------

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        started = time.time()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        status = 0
        body = b""
        verb = self.command.lower()
        logged = False

        def record(code: int) -> None:
            # Logged as the answer starts (send_response), not after it is sent: a client that has read its
            # answer must find its request in the log already.
            nonlocal logged
            if not logged and not path.startswith("/_sandbox"):
                logged = True
                sandbox.requests.record(LoggedRequest(
                    started, self.command, path, query, content_type, decode_body(body), verb, code,
                    self.headers.get("User-Agent", "")))

        self._record = record
        try:
            body = self._read_body()
            target = parse_resource_path(path) if not path.startswith("/_sandbox") else None
            verb = k8s_verb(self.command, target, query.get("watch", "").lower() in ("true", "1"))
            self._authenticate(path)
            fault = sandbox.faults.pick(verb, path)
            if fault is not None:
                status = self._apply_fault(fault)
                if status is not None:
                    return
            request = Request(self.command, path, query, content_type, body, dict(self.headers.items()))
            status = self._route(request, target, fault)
        except errors.ApiError as exc:
            status = self._send_json(exc.code, exc.status(), exc.headers)
        except (ConnectionError, socket.timeout, BrokenPipeError):
            status = 0
            self.close_connection = True
        except Exception as exc:  # a sandbox bug must look like a server error, not a hung client
            sandbox.log.exception("unhandled error serving %s %s", self.command, path)
            failure = errors.internal_error(f"{type(exc).__name__}: {exc}")
            try:
                status = self._send_json(500, failure.status())
            except OSError:
                status = 0
        finally:
            record(status)
            self._record = None

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._record is not None:
            self._record(code)
        super().send_response(code, message)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise errors.ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
        return self.rfile.read(length) if length else b""

    def _authenticate(self, path: str) -> None:
        token = self.server.sandbox.config.token
        if not token or path in ("/healthz", "/livez", "/readyz"):
            return
        sent = self.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise errors.ApiError(401, "Unauthorized", "Unauthorized")

    def _apply_fault(self, fault: Fault) -> int | None:
        """Carry out a fault; returns the status sent when the request ends here, else None."""
        if fault.latency:
            time.sleep(fault.latency)
        if fault.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 0
        if fault.status is not None:
            error = _fault_error(fault)
            return self._send_json(error.code, error.status(), error.headers)
        return None

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, request: Request, target: Target | None, fault: Fault | None) -> int:
        path = request.path
        sandbox = self.server.sandbox
        if path.startswith("/_sandbox/"):
            return self._admin(request)
        if target is not None:
            result = sandbox.api.handle(request, target)
            as_table = wants_table(request.headers.get("Accept", "")) and target.subresource is None
            if isinstance(result, WatchStream):
                return self._stream(result, fault, as_table)
            if as_table and request.method == "GET" and result.status == 200:
                body = result.body
                rows = body["items"] if target.name is None else [body]
                result = Response(200, table(target.resource, rows, body["metadata"] if target.name is None else {}))
            return self._send(result)
        if request.method != "GET":
            raise errors.method_not_allowed()
        if path == "/openapi/v2":
            self._write(200, openapi_v2.document(), openapi_v2.MEDIA_TYPE, {})
            return 200
        doc = _static_document(path)
        if doc is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if isinstance(doc, str):
            return self._send(Response(200, doc, "text/plain"))
        return self._send_json(200, doc)

    def _admin(self, request: Request) -> int:
        sandbox = self.server.sandbox
        path, method = request.path.rstrip("/"), request.method
        if path == "/_sandbox/requests":
            if method == "GET":
                since = float(request.query.get("since") or 0)
                return self._send_json(200, {"requests": [e.as_dict() for e in sandbox.requests.entries(since)]})
            if method == "DELETE":
                sandbox.requests.clear()
                return self._send_json(200, {"cleared": True})
        if path == "/_sandbox/faults":
            if method == "GET":
                return self._send_json(200, {"faults": [f.as_dict() for f in sandbox.faults.rules()]})
            if method == "POST":
                try:
                    payload = json.loads(request.body or b"{}")
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise errors.bad_request(f"fault rule is not valid JSON: {exc}") from None
                if not isinstance(payload, dict):
                    raise errors.bad_request("fault rule must be a JSON object")
                allowed = {"verb", "path", "status", "retry_after", "latency", "drop", "cut_watch_after",
                           "probability", "times"}
                unknown = set(payload) - allowed
                if unknown:
                    raise errors.bad_request(f"unknown fault fields: {sorted(unknown)}; allowed: {sorted(allowed)}")
                try:
                    rule = sandbox.faults.add(**payload)
                except (TypeError, ValueError) as exc:
                    raise errors.bad_request(str(exc)) from None
                return self._send_json(201, rule.as_dict())
            if method == "DELETE":
                sandbox.faults.clear()
                return self._send_json(200, {"cleared": True})
        if path.startswith("/_sandbox/faults/") and method == "DELETE":
            if sandbox.faults.remove(path.rsplit("/", 1)[-1]):
                return self._send_json(200, {"removed": True})
            raise errors.ApiError(404, "NotFound", "no such fault")
        raise errors.ApiError(404, "NotFound", f"no sandbox endpoint {method} {path}")

    # -- writing -----------------------------------------------------------------------------------

    def _send(self, response: Response) -> int:
        if response.content_type == "application/json":
            return self._send_json(response.status, response.body, response.headers)
        data = response.body.encode() if isinstance(response.body, str) else response.body
        self._write(response.status, data, response.content_type, response.headers)
        return response.status

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        data = self.server.encoder.encode(body)
        self._write(status, data, "application/json", headers or {})
        return status

    def _write(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, stream: WatchStream, fault: Fault | None, as_table: bool = False) -> int:
        """Send watch events as chunked JSON lines until the timeout, a cut fault, or shutdown."""
        sandbox = self.server.sandbox
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        deadline = time.monotonic() + stream.timeout
        cut_at = time.monotonic() + fault.cut_watch_after if fault and fault.cut_watch_after is not None else None
        bookmark_every = sandbox.config.bookmark_seconds
        next_bookmark = time.monotonic() + bookmark_every
        watcher = stream.watcher
        ended_by_error = False
        try:
            while not sandbox.stopping.is_set():
                now = time.monotonic()
                if cut_at is not None and now >= cut_at:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # mid-stream, no terminating chunk
                    return 200
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark, cut_at or deadline) - now
                try:
                    item = watcher.events.get(timeout=max(0.01, min(wait, 0.5)))
                except queue.Empty:
                    item = ()
                if item is None:
                    break
                if item and item[0] == "ERROR":           # e.g. 410 Expired: the stream's last event
                    self._chunk({"type": "ERROR", "object": item[1]})
                    ended_by_error = True
                    break
                if item:
                    obj = table(stream.resource, [item[1]]) if as_table else item[1]
                    self._chunk({"type": item[0], "object": obj})
                if stream.bookmarks and time.monotonic() >= next_bookmark:
                    bookmark = self._bookmark(stream)
                    if bookmark is not None:
                        self._chunk(bookmark)
                        next_bookmark = time.monotonic() + bookmark_every
            if stream.bookmarks and not ended_by_error:
                bookmark = self._bookmark(stream)
                if bookmark is not None:
                    self._chunk(bookmark)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, BrokenPipeError, OSError):
            self.close_connection = True
        finally:
            watcher.close()
        return 200

    def _bookmark(self, stream: WatchStream) -> dict | None:
        """A BOOKMARK at the current version, or None while events are still queued for this stream: a
        bookmark must not claim a version past an event the client has not been sent yet (it would resume
        after it and miss it)."""
        store = self.server.sandbox.store
        with store.lock:                       # events are queued under this lock, so the check is exact
            if not stream.watcher.events.empty():
                return None
            rv = str(store.resource_version)
        return {"type": "BOOKMARK", "object": {"kind": stream.resource.kind,
                                               "apiVersion": stream.resource.api_version,
                                               "metadata": {"resourceVersion": rv}}}

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _fault_error(fault: Fault) -> errors.ApiError:
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


def _static_document(path: str) -> Any:
    path = path.rstrip("/") or "/"
    if path in ("/healthz", "/livez", "/readyz"):
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
