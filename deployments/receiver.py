"""The alert receiver: authenticated webhooks in, one Prefect event per accepted alert out.

Why this exists: self-hosted Prefect has no webhooks, but its API takes events (`POST /events`) and a
deployment trigger turns an event into a run. So the receiver authenticates the sender, parses the
payload (deployments/alerts.py), applies the rules (deployments/rules.py), suppresses duplicates and
cooldowns, and posts events; the trigger in prefect.yaml starts the runbook from
`event.payload.parameters`.

Why the answers are what they are: Alertmanager retries 5xx and drops 4xx. So an unreachable or failing
Prefect API is a 503 and no dedupe/cooldown state is recorded (the retry must be able to start the run:
no alert is lost silently), while a delivery that no rule wants is a 422 (retrying cannot help).
Decisions and the event post happen under one lock, so two deliveries of the same alert racing each
other still start one run.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Literal, Mapping

import httpx
from pydantic import BaseModel

from tasks.catalog import Catalog
from tasks.errors import PermanentError, TransientError

from .alerts import SOURCES, Alert, PayloadError, detect_and_parse
from .rules import Ignored, RuleSet, Start, resolve

log = logging.getLogger("runbooks.receiver")

MAX_BODY_BYTES = 1 << 20
SIGNATURE_HEADER = "X-Runbooks-Signature"
TOKEN_ENV, HMAC_KEY_ENV = "RUNBOOKS_RECEIVER_TOKEN", "RUNBOOKS_RECEIVER_HMAC_KEY"
MIN_SECRET_CHARS = 16
_ROUTE = re.compile(r"/alerts/([a-z-]+)/?")


class PrefectUnavailable(TransientError):
    """The Prefect API could not be reached or answered 5xx: the sender should retry."""


class PrefectRejected(PermanentError):
    """The Prefect API refused the events (4xx): a receiver or server configuration problem."""


class Credentials:
    """The shared secrets a sender proves: a bearer token, or an HMAC-SHA256 of the body. Never logged."""

    def __init__(self, *, token: str | None = None, hmac_key: str | None = None) -> None:
        for name, value in ((TOKEN_ENV, token), (HMAC_KEY_ENV, hmac_key)):
            if value is not None and len(value) < MIN_SECRET_CHARS:
                raise ValueError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
        if not token and not hmac_key:
            raise ValueError(f"set {TOKEN_ENV} (bearer token) or {HMAC_KEY_ENV} (HMAC key), or both: "
                             "the receiver never accepts unauthenticated alerts")
        self._token = token.encode() if token else None
        self._key = hmac_key.encode() if hmac_key else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Credentials":
        return cls(token=environ.get(TOKEN_ENV) or None, hmac_key=environ.get(HMAC_KEY_ENV) or None)

    def accepts(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True when the request carries the bearer token or a valid body signature (constant time)."""
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if self._token and scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "replace"), self._token):
            return True
        algorithm, _, signature = (headers.get(SIGNATURE_HEADER) or "").partition("=")
        if self._key and algorithm.strip().lower() == "sha256":
            expected = hmac.new(self._key, body, hashlib.sha256).hexdigest().encode()
            return hmac.compare_digest(signature.strip().lower().encode("utf-8", "replace"), expected)
        return False


class Outcome(BaseModel):
    """What happened to one alert of a delivery; returned to the sender and logged."""
    alert: str
    source: str
    fingerprint: str
    outcome: Literal["started", "duplicate", "cooldown", "resolved", "ignored"]
    reason: str = ""
    rule: str | None = None
    runbook: str | None = None
    target: str | None = None
    event_id: str | None = None


class PrefectEvents:
    """Posts events to `{PREFECT_API_URL}/events`, authenticating as the Prefect client does."""

    def __init__(self, api_url: str, *, auth_string: str | None = None, api_key: str | None = None,
                 timeout: float = 10.0) -> None:
        self.url = api_url.rstrip("/") + "/events"
        headers = {"Content-Type": "application/json"}
        if auth_string:     # PREFECT_API_AUTH_STRING "user:password": HTTP basic, like PrefectClient
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def post(self, events: list[dict]) -> None:
        body = json.dumps(events, ensure_ascii=True).encode("ascii")
        try:
            response = self._client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise PrefectUnavailable(f"Prefect API unreachable at {self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise PrefectUnavailable(f"Prefect API at {self.url} answered {response.status_code}")
        if response.status_code >= 400:
            raise PrefectRejected(f"Prefect API at {self.url} refused the events: {response.status_code} "
                                  f"{response.text[:300]}")

    def close(self) -> None:
        self._client.close()


def alert_event(alert: Alert, start: Start) -> dict:
    """The Prefect event for one accepted alert; the deployment trigger reads payload.parameters."""
    summary = alert.summary or "(no summary)"
    parameters = {**start.parameters, "service": start.service, "environment": start.environment,
                  "requested_by": f"alert:{alert.source}",
                  "alert": f"{alert.source} alert {alert.name} ({alert.severity}) fingerprint "
                           f"{alert.fingerprint}: {summary}"[:2000]}
    return {
        "occurred": dt.datetime.now(dt.timezone.utc).isoformat(),
        "event": f"runbooks.alert.{start.rule.runbook}",
        "resource": {"prefect.resource.id": f"runbooks.alert.{alert.fingerprint}",
                     "prefect.resource.name": alert.name,
                     "runbooks.runbook": start.rule.runbook, "runbooks.target": start.target},
        "payload": {"parameters": parameters, "alert": alert.model_dump(mode="json")},
        "id": str(uuid.uuid4()),
    }


class AlertDispatcher:
    """Decides each alert's outcome and posts the accepted ones as one batch of events.

    State (when each fingerprint and each target last started a run) is recorded only after Prefect
    accepted the events, so a failed post leaves the alert startable by the sender's retry.
    """

    def __init__(self, rules: RuleSet, catalog: Catalog, events: PrefectEvents,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules, self.catalog, self.events, self.clock = rules, catalog, events, clock
        self._lock = threading.Lock()
        self._fingerprints: dict[tuple[str, str], float] = {}
        self._targets: dict[str, float] = {}
        self._horizon = max(max(r.dedupe_seconds, r.cooldown_seconds) for r in rules.rules)

    def dispatch(self, alerts: list[Alert]) -> list[Outcome]:
        with self._lock:
            now = self.clock()
            outcomes, events, accepted = [], [], []
            for alert in alerts:
                outcome, start = self._decide(alert, now, accepted)
                if start is not None:
                    event = alert_event(alert, start)
                    outcome.event_id = event["id"]
                    events.append(event)
                    accepted.append((alert, start))
                outcomes.append(outcome)
            if events:
                self.events.post(events)      # raises: nothing recorded, nothing logged as started
                self._record(accepted, now)
        for outcome in outcomes:
            log.info("alert %s %s fingerprint=%s: %s%s", outcome.source, outcome.alert, outcome.fingerprint,
                     outcome.outcome, f" ({outcome.reason})" if outcome.reason else
                     f" {outcome.runbook} on {outcome.target} event={outcome.event_id}")
        return outcomes

    def _decide(self, alert: Alert, now: float, accepted: list[tuple[Alert, Start]]) -> tuple[Outcome, Start | None]:
        base = dict(alert=alert.name, source=alert.source, fingerprint=alert.fingerprint)
        rule = self.rules.first_match(alert)
        if rule is None:
            return Outcome(**base, outcome="ignored", reason=f"no rule matches alert {alert.name!r} "
                                                              f"({alert.source}, severity {alert.severity})"), None
        base.update(rule=rule.name, runbook=rule.runbook)
        if alert.status == "resolved":
            return Outcome(**base, outcome="resolved", reason="resolved alerts start nothing"), None
        start = resolve(rule, alert, self.catalog)
        if isinstance(start, Ignored):
            return Outcome(**base, outcome="ignored", reason=start.reason), None
        base["target"] = start.target
        key = (alert.source, alert.fingerprint)
        if key in {(a.source, a.fingerprint) for a, _ in accepted} or (
                now - self._fingerprints.get(key, -1e18) < rule.dedupe_seconds):
            return Outcome(**base, outcome="duplicate",
                           reason=f"this alert started a run less than {rule.dedupe_seconds}s ago"), None
        if start.target in {s.target for _, s in accepted} or (
                now - self._targets.get(start.target, -1e18) < rule.cooldown_seconds):
            return Outcome(**base, outcome="cooldown",
                           reason=f"{start.target} had a run started less than {rule.cooldown_seconds}s ago"), None
        return Outcome(**base, outcome="started"), start

    def _record(self, accepted: list[tuple[Alert, Start]], now: float) -> None:
        for alert, start in accepted:
            self._fingerprints[(alert.source, alert.fingerprint)] = now
            self._targets[start.target] = now
        for table in (self._fingerprints, self._targets):     # forget what no window can still see
            for key in [k for k, t in table.items() if now - t > self._horizon]:
                del table[key]


class _Handler(BaseHTTPRequestHandler):
    server_version = "runbooks-receiver/1"
    timeout = 15        # a client that stops sending mid-body does not hold a thread forever
    server: "_Server"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            return self._reply(200, {"status": "ok"})
        self._reply(404, {"error": "not found; GET /healthz or POST /alerts/{source}"})

    def do_POST(self) -> None:
        route = _ROUTE.fullmatch(self.path.split("?", 1)[0])
        if not route or route.group(1) not in SOURCES:
            return self._reply(404, {"error": f"not found; POST /alerts/{{{'|'.join(SOURCES)}}}"})
        body = self._read_body()
        if body is None:
            return
        if not self.server.credentials.accepts(self.headers, body):
            log.warning("401 for %s from %s: no valid bearer token or signature", self.path, self.client_address[0])
            return self._reply(401, {"error": "authentication required: bearer token or "
                                              f"{SIGNATURE_HEADER}: sha256=<hex HMAC of the body>"},
                               {"WWW-Authenticate": "Bearer"})
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
        matched = any(o.outcome != "ignored" for o in outcomes)
        self._reply(202 if matched else 422, {"outcomes": [o.model_dump(exclude_none=True) for o in outcomes]})

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

    def __init__(self, address: tuple[str, int], dispatcher: AlertDispatcher, credentials: Credentials) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dispatcher, self.credentials = dispatcher, credentials
        super().__init__(address, _Handler)


class ReceiverServer:
    """The HTTP server in a background thread: `start()`, `url`, `stop()` (also a context manager)."""

    def __init__(self, dispatcher: AlertDispatcher, credentials: Credentials, *,
                 host: str = "127.0.0.1", port: int = 9095) -> None:
        self._httpd = _Server((host, port), dispatcher, credentials)
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
