"""The alert receiver: authenticated webhooks in, one Prefect event per accepted alert out.

Why this exists: self-hosted Prefect has no webhooks, but its API takes events (`POST /events`) and a
deployment trigger turns an event into a run. So the receiver authenticates the sender, parses the
payload (deployments/alerts.py), applies the rules (deployments/rules.py), decides each alert's outcome
(deployments/dispatch.py: duplicates, cooldown from the change records, runs in flight) and posts events;
the trigger in prefect.yaml starts the runbook from `event.payload`.

Why the answers are what they are: Alertmanager retries 5xx and drops 4xx and 2xx. So an unreachable or
failing Prefect API, and an alert held back only because a run on its object is still in flight, are a 503
with Retry-After (nothing is lost: the sender keeps the alert); a delivery that no rule wants is a 422
(retrying cannot help); anything else is a 202 listing each alert's outcome.

Why signatures carry a timestamp: an HMAC of the body alone can be replayed forever by anyone who saw one
request. As Slack and Stripe do, the sender signs `v1:<unix seconds>:<body>` and sends the seconds in
X-Runbooks-Timestamp; the receiver refuses timestamps older than MAX_SIGNATURE_AGE or more than
MAX_CLOCK_AHEAD in the future, so a captured request is useless after five minutes (and within them the
same alert is a duplicate).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from .alerts import SOURCES, PayloadError, detect_and_parse
from .dispatch import RETRY_OUTCOMES, AlertDispatcher, Outcome, alert_event
from .github_webhook import GitHubWebhooks
from .prefect_api import PrefectApi, PrefectRejected, PrefectUnavailable

log = logging.getLogger("runbooks.receiver")

MAX_BODY_BYTES = 1 << 20
SIGNATURE_HEADER = "X-Runbooks-Signature"
TIMESTAMP_HEADER = "X-Runbooks-Timestamp"
SIGNATURE_VERSION = "v1"
MAX_SIGNATURE_AGE = 300         # seconds a signed request stays valid
MAX_CLOCK_AHEAD = 60            # seconds a sender's clock may run ahead of ours
TOKEN_ENV, HMAC_KEY_ENV = "RUNBOOKS_RECEIVER_TOKEN", "RUNBOOKS_RECEIVER_HMAC_KEY"
MIN_SECRET_CHARS = 16
LISTEN_BACKLOG = 256           # Python's default of 5 reset connections under a burst of deliveries
IN_FLIGHT_RETRY_AFTER = "30"
_ROUTE = re.compile(r"/alerts/([a-z-]+)/?")
GITHUB_PATH = "/webhooks/github"         # GitHub's own signature (X-Hub-Signature-256), not the token/HMAC above
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
AUTH_HELP = (f"authentication required: Authorization: Bearer <token>, or {TIMESTAMP_HEADER}: <unix seconds> and "
             f"{SIGNATURE_HEADER}: {SIGNATURE_VERSION}=<hex HMAC-SHA256 of '{SIGNATURE_VERSION}:<timestamp>:<body>'> "
             f"(timestamp at most {MAX_SIGNATURE_AGE}s old)")


def signature(key: str | bytes, timestamp: str, body: bytes) -> str:
    """The X-Runbooks-Signature value for a body sent at `timestamp` (unix seconds, as sent)."""
    key = key.encode() if isinstance(key, str) else key
    message = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    return f"{SIGNATURE_VERSION}=" + hmac.new(key, message, hashlib.sha256).hexdigest()


class Credentials:
    """The shared secrets a sender proves: a bearer token, or a timestamped HMAC-SHA256. Never logged."""

    def __init__(self, *, token: str | None = None, hmac_key: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in ((TOKEN_ENV, token), (HMAC_KEY_ENV, hmac_key)):
            if value is not None and len(value) < MIN_SECRET_CHARS:
                raise ValueError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
        if not token and not hmac_key:
            raise ValueError(f"set {TOKEN_ENV} (bearer token) or {HMAC_KEY_ENV} (HMAC key), or both: "
                             "the receiver never accepts unauthenticated alerts")
        self._token = token.encode() if token else None
        self._key = hmac_key.encode() if hmac_key else None
        self._clock = clock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Credentials":
        return cls(token=environ.get(TOKEN_ENV) or None, hmac_key=environ.get(HMAC_KEY_ENV) or None)

    def refusal(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """None when the request carries the bearer token or a fresh valid signature; else why not
        (safe to return: it never says whether a signature would have matched)."""
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if self._token and scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), self._token):
            return None
        sent = (headers.get(SIGNATURE_HEADER) or "").strip()
        if not self._key or not sent:
            return "no valid bearer token or signature"
        stamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
        if not _TIMESTAMP.fullmatch(stamp):
            return f"a signature needs {TIMESTAMP_HEADER}: <unix seconds> (signatures of the body alone are refused)"
        age = self._clock() - int(stamp)
        if age > MAX_SIGNATURE_AGE or age < -MAX_CLOCK_AHEAD:
            return (f"{TIMESTAMP_HEADER} is {abs(age):.0f}s in the {'past' if age > 0 else 'future'}; signed requests "
                    f"are valid for {MAX_SIGNATURE_AGE}s (clocks may differ by {MAX_CLOCK_AHEAD}s)")
        if hmac.compare_digest(sent.lower().encode("utf-8", "replace"), signature(self._key, stamp, body).encode()):
            return None
        return "no valid bearer token or signature"

    def accepts(self, headers: Mapping[str, str], body: bytes) -> bool:
        return self.refusal(headers, body) is None


def delivery_status(outcomes: list[Outcome]) -> int:
    """503 when any alert should be retried, else 202 when a rule took any, else 422."""
    if any(o.outcome in RETRY_OUTCOMES for o in outcomes):
        return 503
    return 202 if any(o.outcome != "ignored" for o in outcomes) else 422


class _Handler(BaseHTTPRequestHandler):
    server_version = "runbooks-receiver/1"
    timeout = 15        # a client that stops sending mid-body does not hold a thread forever
    server: "_Server"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            return self._reply(200, {"status": "ok"})
        self._reply(404, {"error": "not found; GET /healthz or POST /alerts/{source}"})

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] == GITHUB_PATH and self.server.github is not None:
            return self._github()
        route = _ROUTE.fullmatch(self.path.split("?", 1)[0])
        if not route or route.group(1) not in SOURCES:
            return self._reply(404, {"error": f"not found; POST /alerts/{{{'|'.join(SOURCES)}}}"})
        body = self._read_body()
        if body is None:
            return
        refused = self.server.credentials.refusal(self.headers, body)
        if refused is not None:
            log.warning("401 for %s from %s: %s", self.path, self.client_address[0], refused)
            return self._reply(401, {"error": f"{refused}; {AUTH_HELP}"}, {"WWW-Authenticate": "Bearer"})
        try:
            alerts = detect_and_parse(body, self.headers.get("Content-Type", ""), source=route.group(1))
        except PayloadError as exc:
            log.warning("400 for %s from %s: %s", self.path, self.client_address[0], exc)
            return self._reply(400, {"error": str(exc)})
        try:
            outcomes = self.server.dispatcher.dispatch(alerts)
        except PrefectUnavailable as exc:
            log.error("503 for %s: %s; nothing recorded, the sender should retry", self.path, exc)
            return self._reply(503, {"error": str(exc)}, {"Retry-After": "10"})
        except PrefectRejected as exc:
            log.error("502 for %s: %s", self.path, exc)
            return self._reply(502, {"error": str(exc)})
        status = delivery_status(outcomes)
        self._reply(status, {"outcomes": [o.model_dump(exclude_none=True) for o in outcomes]},
                    {"Retry-After": IN_FLIGHT_RETRY_AFTER} if status == 503 else None)

    def _github(self) -> None:
        """GitHub webhooks (deployments/github_webhook.py): signature first, then the delivery's outcome."""
        body = self._read_body()
        if body is None:
            return
        if not self.server.github.authentic(self.headers, body):
            log.warning("401 for %s from %s: no valid X-Hub-Signature-256", self.path, self.client_address[0])
            return self._reply(401, {"error": "no valid X-Hub-Signature-256 (HMAC-SHA256 of the body with the "
                                              "webhook secret)"})
        try:
            delivery = self.server.github.handle(self.headers, body)
        except ValueError as exc:
            return self._reply(400, {"error": str(exc)})
        except PrefectUnavailable as exc:
            return self._reply(503, {"error": str(exc)}, {"Retry-After": "10"})
        except PrefectRejected as exc:
            return self._reply(502, {"error": str(exc)})
        log.info("github delivery %s: %s%s", delivery.delivery, delivery.outcome,
                 f" ({delivery.reason})" if delivery.reason else f" run {delivery.run_id} event={delivery.event_id}")
        self._reply(202, delivery.model_dump(exclude_none=True))

    def _read_body(self) -> bytes | None:
        """The body, or None after answering: the size is checked before a byte of it is read."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None:
            self._reply(411, {"error": "send the body with a Content-Length (no chunked encoding)"})
            return None
        if not length.strip().isdigit():
            self._reply(400, {"error": "Content-Length is not a number"})
            return None
        if int(length) > MAX_BODY_BYTES:
            log.warning("413 for %s from %s: %s bytes", self.path, self.client_address[0], length.strip())
            self._reply(413, {"error": f"body of {int(length)} bytes is over the {MAX_BODY_BYTES} byte limit"})
            return None
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self._reply(400, {"error": "body is shorter than its Content-Length"})
            return None
        return body

    def _reply(self, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(document).encode()
        self.close_connection = True
        self.send_response(status)
        for name, value in {**(headers or {}), "Content-Type": "application/json",
                            "Content-Length": str(len(data)), "Connection": "close"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:     # the request line only; never headers
        log.debug("%s %s", self.client_address[0], format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG         # listen(2) backlog; the kernel caps it at net.core.somaxconn

    def __init__(self, address: tuple[str, int], dispatcher: AlertDispatcher, credentials: Credentials,
                 github: "GitHubWebhooks | None" = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dispatcher, self.credentials, self.github = dispatcher, credentials, github
        super().__init__(address, _Handler)


class ReceiverServer:
    """The HTTP server in a background thread: `start()`, `url`, `stop()` (also a context manager)."""

    def __init__(self, dispatcher: AlertDispatcher, credentials: Credentials, *,
                 host: str = "127.0.0.1", port: int = 9095, github: "GitHubWebhooks | None" = None) -> None:
        self._httpd = _Server((host, port), dispatcher, credentials, github)
        self._thread: threading.Thread | None = None
        host_part = f"[{host}]" if ":" in host else host
        self.url = f"http://{host_part}:{self._httpd.server_address[1]}"

    def start(self) -> "ReceiverServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="alert-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()

    def __enter__(self) -> "ReceiverServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["AlertDispatcher", "Credentials", "Outcome", "PrefectApi", "PrefectRejected", "PrefectUnavailable",
           "ReceiverServer", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "alert_event", "delivery_status", "signature"]
