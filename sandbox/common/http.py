"""The shared HTTP(S) server: one thread per connection, request logging, fault injection and the admin
endpoints, with everything API-specific left to the service's hooks (see `standin.StandIn`)."""
from __future__ import annotations

import socket
import ssl
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import admin
from .errors import HttpError
from .faults import Fault
from .pki import KeyPair
from .requestlog import LoggedRequest

if TYPE_CHECKING:
    from .standin import StandIn


class Headers(dict):
    """Request headers looked up case-insensitively, as HTTP names them."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__((str(k).lower(), v) for k, v in dict(items).items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key).lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    headers: Headers = field(default_factory=Headers)
    fault: Fault | None = None                         # the fault that fired and let the request through
    state: dict[str, Any] = field(default_factory=dict)  # the service's parse of the request, kept for serve()

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: "StandIn") -> None:
        self.service = service
        super().__init__(address, Handler)

    def use_tls(self, serving: KeyPair) -> None:
        """Serve HTTPS with `serving` (a certificate from the stand-in's generated CA)."""
        self.socket = server_context(serving).wrap_socket(self.socket, server_side=True,
                                                          do_handshake_on_connect=False)


    def reload_tls(self, serving: KeyPair) -> None:
        """Present `serving` on every new connection from now on (a rotated certificate); open ones keep theirs."""
        load_serving(self.socket.context, serving)       # type: ignore[attr-defined]


def server_context(serving: KeyPair) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_serving(context, serving)
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_serving(context: ssl.SSLContext, serving: KeyPair) -> None:
    with tempfile.TemporaryDirectory() as tmp:     # the ssl module loads key material from files only
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(serving.cert_pem)
        key.write_bytes(serving.key_pem)
        context.load_cert_chain(cert, key)


class Handler(BaseHTTPRequestHandler):
    """One connection. Services answer through `send_json`, `send_bytes` and the stream methods."""

    protocol_version = "HTTP/1.1"
    server: StandInServer
    _record: Any = None              # the current request's log hook (see _serve)
    _request: Request | None = None  # the current request, until its answer takes the service's headers
    disable_nagle_algorithm = True   # headers and body go out as separate writes: avoid a 40 ms delayed-ACK stall

    @property
    def server_version(self) -> str:  # type: ignore[override]
        return self.server.service.server_name

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr chatter
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- one request -------------------------------------------------------------------------------

    def _serve(self) -> None:
        service = self.server.service
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        request = Request(self.command, url.path, query, content_type, b"", Headers(self.headers.items()))
        self._record = _Recorder(service, request, self.headers.get("User-Agent", ""))
        self._request = request
        status = 0
        try:
            request.body = self._read_body(service.max_body)
            admin_path = url.path.startswith(admin.PREFIX)
            if not admin_path:
                self._record.verb = service.verb(request)
            service.authenticate(request)
            if admin_path:
                status = self.send_json(*admin.handle(service, request))
                return
            request.fault = service.faults.pick(self._record.verb, url.path)
            if request.fault is not None:
                status = self._apply_fault(request.fault)
                if status is not None:
                    return
            status = service.serve(request, self)
        except HttpError as exc:
            status = self.send_error_answer(exc)
        except (ConnectionError, socket.timeout, BrokenPipeError):
            status = 0
            self.close_connection = True
        except Exception as exc:  # a stand-in bug must look like a server error, not a hung client
            service.log.exception("unhandled error serving %s %s", self.command, url.path)
            try:
                status = self.send_error_answer(HttpError(500, "InternalError",
                                                          f"Internal error occurred: {type(exc).__name__}: {exc}"))
            except OSError:
                status = 0
        finally:
            self._record(status)
            self._record = self._request = None

    def send_response(self, code: int, message: str | None = None) -> None:
        if self._record is not None:
            self._record(code)
        super().send_response(code, message)

    def _read_body(self, limit: int) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self.close_connection = True
            raise HttpError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")
        return self.rfile.read(length) if length else b""

    def _apply_fault(self, fault: Fault) -> int | None:
        """Carry out a fault; returns the status sent when the request ends here, else None."""
        if fault.latency:
            time.sleep(fault.latency)
        if fault.drop:
            self.cut()
            return 0
        if fault.status is not None:
            return self.send_error_answer(self.server.service.fault_error(fault))
        return None

    # -- answering ---------------------------------------------------------------------------------

    def send_error_answer(self, error: HttpError) -> int:
        status, data, content_type, headers = self.server.service.render_error(error)
        self.send_bytes(status, data, content_type, headers)
        return status

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self.send_bytes(status, self.server.service.encode(body), "application/json", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in {**self._service_headers(), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        return status

    def _service_headers(self) -> dict[str, str]:
        """The service's `answer_headers` for the current request, once (an admin request gets none)."""
        request, self._request = self._request, None
        if request is None or request.path.startswith(admin.PREFIX):
            return {}
        return self.server.service.answer_headers(request)

    def start_stream(self, content_type: str) -> None:
        """Begin a chunked 200 answer (a watch, a log follow)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in self._service_headers().items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.flush()

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self) -> None:
        """Close the connection now, mid-answer if one started (no terminating chunk)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Recorder:
    """Logs the request once, as its answer starts (send_response), not after it is sent: a client that has
    read its answer must find its request in the log already. Admin requests are never logged."""

    def __init__(self, service: "StandIn", request: Request, user_agent: str) -> None:
        self.service, self.request, self.user_agent = service, request, user_agent
        self.started = time.time()
        self.verb = request.method.lower()
        self.done = request.path.startswith(admin.PREFIX)

    def __call__(self, code: int) -> None:
        if self.done:
            return
        self.done = True
        r = self.request
        self.service.requests.record(LoggedRequest(self.started, r.method, r.path, r.query, r.content_type,
                                                   self.service.logged_body(r), self.verb, code, self.user_agent))
