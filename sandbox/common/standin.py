"""`StandIn`: the base of every API stand-in. It owns the server thread, TLS, faults and the request log;
a service subclasses it and overrides the hooks that make it look like its real API (`serve`, `verb`,
`authenticate`, `render_error`, `fault_error`, `answer_headers`, `logged_body`, `admin`, `encode`)."""
from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import pki
from .errors import HttpError, reason_for
from .faults import Fault, Faults
from .requestlog import RequestLog, decode_body

if TYPE_CHECKING:
    from .http import Handler, Request, StandInServer

LOOPBACK = ("127.0.0.1", "localhost", "::1")
VERB_OF_METHOD = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass
class StandInConfig:
    """Where and how a stand-in listens. It binds to loopback only: nothing here may reach another address."""

    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    token: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK:
            raise ValueError(f"the sandbox binds to loopback only, not {self.host!r}")


class StandIn:
    server_name = "sandbox"                           # the Server header
    logger_name = "sandbox"
    public_paths: frozenset[str] = frozenset()       # answered without the bearer token
    max_body = 3 * 1024 * 1024
    tls_common_name = "sandbox"                       # the serving certificate's CN
    ca_common_name = "sandbox-ca"
    poll_interval = 0.2                               # how soon a stop is noticed (serve_forever's poll)

    def __init__(self, config: StandInConfig) -> None:
        self.config = config
        self.log = logging.getLogger(self.logger_name)
        self.faults = Faults(config.seed)
        self.requests = RequestLog()
        self.stopping = threading.Event()
        self.ca: pki.KeyPair | None = None
        self._server: "StandInServer | None" = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start_server(self) -> None:
        """Bind (TLS from a fresh CA when configured) and serve on a daemon thread."""
        from .http import StandInServer
        self._server = StandInServer((self.config.host, self.config.port), self)
        if self.config.tls:
            self.ca = pki.generate_ca(self.ca_common_name)
            self._server.use_tls(self._serving_pair())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": self.poll_interval},
                                        name=f"{self.logger_name}-http", daemon=True)
        self._thread.start()

    def rotate_serving_certificate(self) -> None:
        """A new serving certificate (new key and serial, same CA and names) for every new connection, as
        after an AKS certificate rotation; a no-op without TLS."""
        if self.ca is not None and self._server is not None:
            self._server.reload_tls(self._serving_pair())

    def _serving_pair(self) -> pki.KeyPair:
        assert self.ca is not None
        return pki.issue(self.ca, common_name=self.tls_common_name, dns_names=["localhost"],
                         ip_addresses=["127.0.0.1"], duration=dt.timedelta(days=365))

    def stop_server(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None, "sandbox not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- hooks -------------------------------------------------------------------------------------

    def verb(self, request: "Request") -> str:
        """The verb fault rules and the request log use (get, list, create, update, patch, delete, ...)."""
        return VERB_OF_METHOD.get(request.method, request.method.lower())

    def authenticate(self, request: "Request") -> None:
        """A bearer token, when configured, on every path but `public_paths` (HttpError 401 otherwise)."""
        token = self.config.token
        if not token or request.path in self.public_paths:
            return
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise HttpError(401, "Unauthorized", "Unauthorized")

    def serve(self, request: "Request", responder: "Handler") -> int:
        """Answer one request through `responder`; returns the status sent."""
        raise HttpError(404, "NotFound", "the server could not find the requested resource")

    def render_error(self, error: HttpError) -> tuple[int, bytes, str, dict[str, str]]:
        """(status, body, content type, headers) of an error answer, in the service's own shape."""
        body = {"error": {"code": error.reason, "message": error.message}}
        return error.code, self.encode(body), "application/json", dict(error.headers)

    def fault_error(self, fault: Fault) -> HttpError:
        """The error an injected `fault.status` answers with (a 429 carries Retry-After)."""
        code = fault.status or 500
        headers = {}
        if fault.retry_after is not None or code == 429:
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        return HttpError(code, reason_for(code), f"injected fault {code}", headers=headers)

    def answer_headers(self, request: "Request") -> dict[str, str]:
        """Headers added to every answer of the service's API, errors and faults included (not the admin
        endpoints): request ids, rate-limit counters, ..."""
        return {}

    def logged_body(self, request: "Request") -> Any:
        """The request body as the request log keeps it (parsed JSON, else text); a service redacts secrets here."""
        return decode_body(request.body)

    def admin(self, request: "Request") -> tuple[int, Any] | None:
        """(status, JSON body) for a service-specific `/_sandbox/...` endpoint, or None when it has none there."""
        return None

    def encode(self, body: Any) -> bytes:
        """JSON as Go's encoder writes it: compact, one trailing newline."""
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"
