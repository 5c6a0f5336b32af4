"""The Kubernetes sandbox: a Kubernetes API stand-in on loopback, with controllers, faults and a request log."""
from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from ..common.errors import HttpError
from ..common.faults import Fault
from ..common.http import Handler, Request
from ..common.standin import StandIn, StandInConfig
from . import admission, errors, http, strategy
from .api import Api
from .controllers import ControllerManager
from .eviction import install as install_pod_subresources
from .ingress import IngressStandIn
from .rbac import Authorizer
from .resources import RESOURCES, ResourceType
from .store import Store, copy_of

DEMO_MANIFESTS = Path(__file__).parent / "manifests"
PREVIOUS_IMAGES = "sandbox.runbooks.dev/previous-images"


@dataclass
class SandboxConfig(StandInConfig):
    """How the sandbox runs. `speed` makes simulated time pass faster (pod start-up, progress deadlines,
    crash back-off); tests use a high speed so a 600 s progress deadline passes in seconds."""

    speed: float = 1.0
    pod_ready_seconds: float = 2.0
    job_run_seconds: float = 5.0        # how long a run-to-completion (Job) container runs before it exits
    tick_seconds: float = 0.05
    bookmark_seconds: float = 10.0
    controllers: bool = True
    ingress: bool = True                # serve each Ingress's TLS Secrets on a loopback port (ingress.py)
    manifests: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.speed <= 0:
            raise ValueError("speed must be positive")


class Sandbox(StandIn):
    server_name = "kube-sandbox"
    public_paths = http.HEALTH_PATHS
    tls_common_name = "kube-apiserver"
    ca_common_name = "kube-sandbox-ca"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config: SandboxConfig = config or SandboxConfig()
        super().__init__(self.config)
        self.store = Store()
        self.api = Api(self.store)
        self.encoder = http.Encoder()
        self.controllers = ControllerManager(self)
        self.rbac = Authorizer(self.store)       # enforced for tokens from issue_token() only
        install_pod_subresources(self)          # pods/eviction and pods/log
        self._pending_history: list[tuple[str, str, dict]] = []
        self.ingress = IngressStandIn(self)
        # Other ways in besides the static token: each takes a bearer token and says whether it is valid
        # (an AAD-enabled AKS cluster's API server accepts Entra tokens for the AKS server application).
        self.bearer_checks: list[Callable[[str], bool]] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "Sandbox":
        for path in self.config.manifests:
            self.load_manifests(Path(path))
        self.start_server()
        if self.config.controllers:
            self.controllers.start()
            self._replay_release_history()
        if self.config.ingress:
            self.ingress.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.controllers.stop()
        self.ingress.stop()
        self.store.close_watchers()
        self.stop_server()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the service hooks (see common.standin) ----------------------------------------------------

    def verb(self, request: Request) -> str:
        return http.verb(request)

    def authenticate(self, request: Request) -> None:
        """A ServiceAccount token (`issue_token`) is held to RBAC; anything else is checked as before: the admin
        token, a bearer token one of `bearer_checks` accepts, or nothing when the sandbox has no token."""
        sent = request.headers.get("Authorization", "")
        user = self.rbac.user_for(sent)
        if user is None:
            if self.rbac.tokens and sent and sent != f"Bearer {self.config.token}" and not self._bearer_accepted(sent):
                raise errors.ApiError(401, "Unauthorized", "Unauthorized")     # a token this server never issued
            try:
                return super().authenticate(request)
            except HttpError:
                if not self._bearer_accepted(sent):
                    raise
                return None
        if request.path.startswith("/_sandbox/"):
            raise errors.ApiError(403, "Forbidden", "the sandbox's admin endpoints take the admin token")
        self.rbac.check(user, request)

    def _bearer_accepted(self, sent: str) -> bool:
        scheme, _, token = sent.partition(" ")
        return scheme.lower() == "bearer" and any(check(token.strip()) for check in self.bearer_checks)

    def issue_token(self, namespace: str, service_account: str) -> str:
        """A bearer token for `system:serviceaccount:<namespace>:<service_account>`, whose every request is
        allowed only by the Roles and ClusterRoles bound to it (sandbox/kubernetes/rbac.py)."""
        return self.rbac.issue_token(namespace, service_account)

    def serve(self, request: Request, responder: Handler) -> int:
        return http.serve(self, request, responder)

    def render_error(self, error: HttpError) -> tuple[int, bytes, str, dict[str, str]]:
        return http.render_error(self, error)

    def fault_error(self, fault: Fault) -> HttpError:
        return http.fault_error(fault)

    def encode(self, body: Any) -> bytes:
        return self.encoder.encode(body)

    # -- state -------------------------------------------------------------------------------------

    def resource(self, kind: str) -> ResourceType:
        for r in RESOURCES:
            if r.kind == kind or r.plural == kind:
                return r
        raise KeyError(f"unknown kind {kind!r}; known: {sorted(r.kind for r in RESOURCES)}")

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        """A copy of a stored object (test helper)."""
        return copy_of(self.store.get(self.resource(kind), namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [copy_of(o) for o in self.store.items(self.resource(kind), namespace)]

    def apply_object(self, obj: dict) -> dict:
        """Create or replace one object as a server-side write would (defaults, allocations, validation)."""
        obj = copy_of(obj)
        resource = _resource_for(obj)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        meta.pop("uid", None)
        admission.default(resource, obj)
        with self.store.lock:
            existing = self.store.find(resource, meta.get("namespace"), meta.get("name", ""))
            if existing is None:
                strategy.prepare_for_create(self.store, resource, obj)
                admission.validate(resource, obj)
                return self.store.create(resource, obj)
            strategy.prepare_for_update(self.store, resource, obj, existing)
            admission.validate(resource, obj, existing)
            if resource.has_status:
                obj["status"] = existing.get("status", {})
            return self.store.replace(resource, obj)

    def _replay_release_history(self) -> None:
        """Deployments annotated with `sandbox.runbooks.dev/previous-images` (`container=image,...`) were
        loaded with those images; now roll them forward to their declared template, so the estate starts
        with a revision to roll back to, as a real cluster that has shipped before does."""
        for name, namespace, declared in self._pending_history:
            self.wait_for(lambda: any(rs["metadata"].get("ownerReferences")
                                      for rs in self.list("ReplicaSet", namespace)
                                      if rs["metadata"]["name"].startswith(f"{name}-")), timeout=30)
            with self.store.lock:     # controllers write status concurrently: read and write as one
                current = self.get("Deployment", name, namespace)
                current["spec"]["template"] = declared
                self.apply_object(current)
        self._pending_history = []

    def _hold_back(self, doc: dict) -> dict:
        """Swap in a Deployment's previous images (see `_replay_release_history`)."""
        notes = (doc.get("metadata") or {}).get("annotations") or {}
        previous = notes.pop(PREVIOUS_IMAGES, None)
        if doc.get("kind") != "Deployment" or not previous:
            return doc
        older = copy_of(doc)
        images = dict(pair.split("=", 1) for pair in previous.split(","))
        for container in older["spec"]["template"]["spec"]["containers"]:
            container["image"] = images.get(container["name"], container["image"])
        admission.default(self.resource("Deployment"), doc)
        self._pending_history.append((doc["metadata"]["name"], doc["metadata"].get("namespace", "default"),
                                      doc["spec"]["template"]))
        return older

    def load_manifests(self, path: Path) -> list[dict]:
        """Seed state from a YAML file (multi-document) or every *.yaml file in a directory."""
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        docs: list[dict] = []
        for file in files:
            docs += [d for d in yaml.safe_load_all(file.read_text()) if d]
        order = {"Namespace": 0, "Node": 1}
        return [self.apply_object(self._hold_back(d)) for d in sorted(docs, key=lambda d: order.get(d.get("kind"), 2))]

    # -- client configuration ----------------------------------------------------------------------

    def kubeconfig(self, *, namespace: str = "default", context: str = "sandbox", token: str | None = None) -> dict:
        """A kubeconfig for the admin (the sandbox's token, if any), or for `token` (from issue_token)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca.cert_pem).decode()
        token = token or self.config.token
        user: dict[str, Any] = {"token": token} if token else {}
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": context, "cluster": cluster}],
                "users": [{"name": f"{context}-admin", "user": user}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-admin",
                                                           "namespace": namespace}}],
                "current-context": context}

    def write_kubeconfig(self, path: Path, **kwargs: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(**kwargs), sort_keys=False))
        path.chmod(0o600)
        return path

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.02) -> Any:
        """Poll `predicate()` until it returns a truthy value (test helper)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)


def _resource_for(obj: dict) -> ResourceType:
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    for r in RESOURCES:
        if r.kind == kind and r.api_version == api_version:
            return r
    raise errors.bad_request(f'no matches for kind "{kind}" in version "{api_version}"')


def new_token() -> str:
    return secrets.token_urlsafe(24)


def iter_kinds(objs: Iterable[dict]) -> list[str]:
    return [o.get("kind", "") for o in objs]
