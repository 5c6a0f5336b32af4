"""`GitHubSandbox`: the GitHub REST API on loopback, as GitHub Enterprise Server serves it (under `/api/v3`;
the bare paths of api.github.com are answered too). See the package docstring for how tests use it."""
from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import HttpError
from ..common.faults import Fault, Faults
from ..common.http import Handler, Request
from ..common.standin import StandIn, StandInConfig
from . import actions, api, api_actions, api_apps, api_issues, api_repos  # noqa: F401  (routes register on import)
from . import admin as github_admin
from . import api_hooks  # noqa: F401
from .hooks import Watcher
from .api import Answer, Ctx, GitHubError
from .auth import App, Auth, Identity, new_app, new_token
from .blobs import PREFIX as BLOBS, Blobs
from .limits import RateLimitError, RateLimits, request_id, secondary_error
from .model import Repo
from .render import Urls
from .seeding import Seeding

API_PREFIX = "/api/v3"
API_VERSIONS = ("2022-11-28", "2026-03-10")        # what X-GitHub-Api-Version may ask for
_COLLECTIONS = frozenset({"workflows", "runs", "jobs", "issues", "comments", "deployments", "statuses",
                          "check-runs", "branches", "labels", "installations", "pulls", "attempts"})
_FAULT_MESSAGES = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _selected_version(request: Request) -> str:
    asked = request.headers.get("X-GitHub-Api-Version")
    return asked if asked in API_VERSIONS else API_VERSIONS[0]


@dataclass
class GitHubConfig(StandInConfig):
    """Where the stand-in listens, the token it accepts (its user is `login`), the owner new repositories get,
    and how long runs take in simulated seconds (`speed` makes them pass faster)."""

    token: str = field(default_factory=lambda: new_token("ghp_"))
    login: str = "runbooks-bot"
    owner: str = "acme"
    speed: float = 1.0
    queue_seconds: float = 2.0
    run_seconds: float = 30.0
    log_url_seconds: float = 60.0          # how long a signed log URL stays valid
    rate_limit: int = 5000                 # requests per hour per identity
    dispatch_delay: float = 0.0            # simulated seconds before a dispatched run shows in run lists
    app_id: int | None = None              # the GitHub App's identity, kept across restarts (local.py); else
    installation_id: int | None = None     # made up on first use of app()
    app_private_key: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.speed <= 0:
            raise ValueError("speed must be positive")


@dataclass(frozen=True)
class GitHubCredentials:
    """What a client needs: the API root (PyGithub's `base_url`) and the token."""

    base_url: str
    token: str

    def env(self) -> dict[str, str]:
        return {"RUNBOOKS_GITHUB_URL": self.base_url, "RUNBOOKS_GITHUB_TOKEN": self.token}


class GitHubSandbox(Seeding, StandIn):
    server_name = "GitHub.com"
    logger_name = "sandbox.github"
    tls_common_name = "github-sandbox"
    ca_common_name = "github-sandbox-ca"
    poll_interval = 0.02          # a test starts and stops one per test: stop at once

    def __init__(self, config: GitHubConfig | None = None) -> None:
        self.config: GitHubConfig = config or GitHubConfig()
        StandIn.__init__(self, self.config)
        self.lock = threading.RLock()
        self.timing = actions.Timing(self.config.speed, self.config.queue_seconds, self.config.run_seconds)
        self.auth = Auth()
        self.auth.add_token(self.config.token, self.config.login)
        self.rate_limits = RateLimits(self.config.rate_limit)
        self.blobs = Blobs(lambda: self.url, self.config.log_url_seconds)
        self._repos: dict[str, Repo] = {}
        self._app: App | None = None
        self.watcher = Watcher(self._hooked_runs, self._announce, self.stopping)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ca_bundle: Path | None = None
        # Faults that strike after the request took effect: GitHub did the write, the answer is a 5xx.
        self.lost_answers = Faults(self.config.seed)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "GitHubSandbox":
        self.start_server()
        if self.ca is not None:                    # tls=True: PyGithub's `verify=` takes this file
            self._tmp = tempfile.TemporaryDirectory(prefix="github-sandbox-")
            self.ca_bundle = Path(self._tmp.name, "ca.crt")
            self.ca_bundle.write_bytes(self.ca.cert_pem)
        self.watcher.start()
        return self

    def stop(self) -> None:
        self.stop_server()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "GitHubSandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """PyGithub's `base_url`: the API root, as on GitHub Enterprise Server."""
        return f"{self.url}{API_PREFIX}"

    @property
    def urls(self) -> Urls:
        return Urls(self.base_url, self.url)

    def credentials(self) -> GitHubCredentials:
        return GitHubCredentials(self.base_url, self.config.token)

    def app(self) -> App:
        """The GitHub App (made on first use) installed on every repository: `id`, `installation_id` and
        `private_key` (PEM) are what `github.Auth.AppAuth` and `.get_installation_auth` take."""
        with self.lock:
            if self._app is None:
                c = self.config
                self._app = new_app("runbooks-app", c.owner, app_id=c.app_id, installation_id=c.installation_id,
                                    private_key=c.app_private_key)
                self.auth.add_app(self._app)
            return self._app

    # -- the service hooks (see common.standin) ----------------------------------------------------

    def verb(self, request: Request) -> str:
        """GET of a collection is `list`, of one object `get`; the rest by method (POST `create`, ...)."""
        if request.method == "GET":
            last = request.path.rstrip("/").rsplit("/", 1)[-1]
            return "list" if last in _COLLECTIONS else "get"
        return super().verb(request)

    def authenticate(self, request: Request) -> None:
        if request.path.startswith(("/_sandbox", BLOBS)):
            return
        request.state["identity"] = self.auth.identify(request.headers.get("Authorization"))

    def serve(self, request: Request, responder: Handler) -> int:
        if request.path.startswith(BLOBS):
            status, data, content_type = self.blobs.serve(request)
            return responder.send_bytes(status, data, content_type, {"x-ms-request-id": request_id()})
        path = request.path.rstrip("/")
        path = path[len(API_PREFIX):] if path == API_PREFIX or path.startswith(API_PREFIX + "/") else path
        identity: Identity = request.state["identity"]
        counted = path != "/rate_limit"
        if counted:
            self.rate_limits.check(identity.key, identity.who)
        try:
            answer = self._answer(request, path, identity)
        except HttpError:
            if counted:
                self.rate_limits.consume(identity.key)
            raise
        answer = self._conditional(request, answer)
        if counted and answer.status != 304:
            self.rate_limits.consume(identity.key)
        lost = self.lost_answers.pick(self.verb(request), request.path)
        if lost is not None:           # done, but the client hears an error (and may well send it again)
            raise self.fault_error(lost)
        if answer.raw is not None or answer.body is None:
            return responder.send_bytes(answer.status, answer.raw or b"", answer.content_type, answer.headers)
        return responder.send_json(answer.status, answer.body, answer.headers)

    def _answer(self, request: Request, path: str, identity: Identity) -> Answer:
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            raise GitHubError(400, f"API version '{version}' is not supported.")
        handler, params = api.match(request.method, path)
        if identity.kind == "app" and not (path.startswith("/app") or path.endswith("/installation")):
            raise GitHubError(401, "A JSON web token could not be decoded")
        with self.lock:
            return handler(Ctx(self, request, path, params, identity))

    def _conditional(self, request: Request, answer: Answer) -> Answer:
        """ETag on every JSON GET; a matching If-None-Match gets 304 (which GitHub does not count)."""
        if request.method != "GET" or answer.status != 200 or answer.body is None:
            return answer
        etag = 'W/"' + hashlib.sha256(self.encode(answer.body)).hexdigest()[:40] + '"'
        answer.headers["ETag"] = etag
        sent = request.headers.get("If-None-Match")
        if sent and etag in [tag.strip() for tag in sent.split(",")]:
            return Answer(304, None, {"ETag": etag}, raw=b"")
        return answer

    def render_error(self, error: HttpError) -> tuple[int, bytes, str, dict[str, str]]:
        body: dict[str, Any] = {"message": error.message}
        if isinstance(error, GitHubError) and error.errors:
            body["errors"] = error.errors
        docs = error.documentation_url if isinstance(error, GitHubError) else api.DOCS
        if isinstance(error, RateLimitError):
            docs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
        body["documentation_url"] = docs
        body["status"] = str(error.code)
        return error.code, self.encode(body), "application/json; charset=utf-8", dict(error.headers)

    def fault_error(self, fault: Fault) -> HttpError:
        """A 429 (or a 403 with Retry-After) is GitHub's secondary rate limit; 5xx its server errors."""
        status = fault.status or 500
        if status == 429 or (status == 403 and fault.retry_after is not None):
            return secondary_error(status, fault.retry_after if fault.retry_after is not None else 1)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return GitHubError(status, _FAULT_MESSAGES.get(status, "Server Error"), headers=headers)

    def answer_headers(self, request: Request) -> dict[str, str]:
        if request.path.startswith(BLOBS):
            return {}
        identity = request.state.get("identity")
        limits = self.rate_limits.headers(identity.key) if identity else {
            "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Used": "1",
            "X-RateLimit-Reset": str(int(time.time()) + 3600), "X-RateLimit-Resource": "core"}
        return {**limits, "X-GitHub-Request-Id": request_id(), "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Api-Version-Selected": _selected_version(request), "Vary": "Accept, Authorization, Cookie",
                "X-Content-Type-Options": "nosniff"}

    def logged_body(self, request: Request) -> Any:
        """A webhook's secret (in a hook's `config`, or the admin endpoint's `secret`) is not logged."""
        body = super().logged_body(request)
        if isinstance(body, dict):
            body = dict(body)
            if isinstance(body.get("config"), dict) and "secret" in body["config"]:
                body["config"] = {**body["config"], "secret": "REDACTED"}
            if "secret" in body:
                body["secret"] = "REDACTED"
        return body

    def admin(self, request: Request) -> tuple[int, Any] | None:
        """`/_sandbox/github/...`: seeding and steering over HTTP (see admin.py)."""
        return github_admin.handle(self, request)

    def encode(self, body: Any) -> bytes:
        return json.dumps(body, separators=(",", ":")).encode()

    # -- lookups (handlers and tests) ----------------------------------------------------------------

    def repo(self, full_name: str) -> Repo | None:
        with self.lock:
            return self._repos.get(full_name.lower())

    def repos(self) -> list[Repo]:
        with self.lock:
            return list(self._repos.values())
