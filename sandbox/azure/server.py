"""`AzureSandbox`: Azure Resource Manager for Microsoft.ContainerService (AKS) and an Entra ID tenant, on
loopback over HTTPS with a CA generated at start (azure-core refuses bearer tokens over plain HTTP).

The real `ContainerServiceClient` and `ClientSecretCredential` talk to it unchanged: give the client
`base_url=sandbox.url`, `connection_verify=sandbox.ca_bundle`, and the credential
`authority=sandbox.url`, `disable_instance_discovery=True`, `connection_verify=sandbox.ca_bundle`.
Given the Kubernetes sandbox (`kubernetes=`), its demo cluster describes that sandbox's Nodes, user
credentials point at its API, and scaling a pool adds or drains and removes Nodes there."""
from __future__ import annotations

import json
import secrets
import tempfile
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import HttpError, reason_for
from ..common.faults import WRITE_VERBS, Fault
from ..common.http import Handler, Request
from ..common.standin import StandIn, StandInConfig
from . import arm, demo
from .errors import ArmError
from .identity import ARM_SCOPE, Application, Identity
from .nodes import KubeNodes
from .operations import Clock, Operations
from .provisioning import Provisioner
from .resources import AgentPool, ManagedCluster

if TYPE_CHECKING:
    from ..kubernetes.server import Sandbox

AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"     # the AKS AAD server application's id
AZURE_CLI_CLIENT = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"   # the public client kubelogin logs in as
_FAULT_MESSAGES = {
    500: ("InternalServerError", "Encountered internal server error. Diagnostic information: injected fault."),
    502: ("BadGateway", "The gateway did not receive a valid response from 'Microsoft.ContainerService'."),
    503: ("ServiceUnavailable", "The resource provider 'Microsoft.ContainerService' is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway did not receive a response from 'Microsoft.ContainerService' within the "
                            "specified time period."),
}


def _guid() -> str:
    return str(uuid.uuid4())


@dataclass
class AzureConfig(StandInConfig):
    """Where the stand-in listens (always HTTPS), who its tenant and subscription are, the demo cluster's
    name, and how long things take in simulated time (`speed` makes it pass faster)."""

    tls: bool = True
    subscription_id: str = field(default_factory=_guid)
    tenant_id: str = field(default_factory=_guid)
    client_id: str = field(default_factory=_guid)
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    location: str = "westeurope"
    resource_group: str = "rg-runbooks-sandbox"
    cluster_name: str = "runbooks-sandbox"     # the name alert rules see as `cluster` (deployments/alert-rules.yaml)
    demo: bool = True                          # start with the demo cluster
    speed: float = 1.0
    operation_seconds: float = 10.0            # the resource provider's own work before and around each operation
    node_provision_seconds: float = 90.0       # a scale set VM booting (or being reimaged) and joining
    rotation_seconds: float = 600.0            # a certificate rotation
    vcpu_quota: int = 100                      # the subscription's Total Regional vCPUs quota
    aad: bool = False                          # the demo cluster is AAD-enabled (Entra logins to Kubernetes)
    token_lifetime: int = 3599

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tls:
            raise ValueError("the Azure stand-in serves HTTPS only: azure-core sends bearer tokens over TLS only")
        if self.speed <= 0:
            raise ValueError("speed must be positive")


@dataclass(frozen=True)
class AzureCredentials:
    """What a client needs: the service principal, the authority, the subscription, ARM and the CA bundle."""

    tenant_id: str
    client_id: str
    client_secret: str
    authority: str
    subscription_id: str
    arm_endpoint: str
    ca_bundle: Path
    scope: str = ARM_SCOPE

    def env(self) -> dict[str, str]:
        """Environment variables naming all of it. Not azure-identity's own AZURE_* names on purpose: its
        EnvironmentCredential would pick them up and, with instance discovery on, ask login.microsoftonline.com
        to validate the loopback authority. A client reads these and passes `disable_instance_discovery=True`."""
        return {"RUNBOOKS_AZURE_TENANT_ID": self.tenant_id, "RUNBOOKS_AZURE_CLIENT_ID": self.client_id,
                "RUNBOOKS_AZURE_CLIENT_SECRET": self.client_secret, "RUNBOOKS_AZURE_AUTHORITY": self.authority,
                "RUNBOOKS_AZURE_SUBSCRIPTION_ID": self.subscription_id, "RUNBOOKS_ARM_ENDPOINT": self.arm_endpoint,
                "RUNBOOKS_AZURE_CA_BUNDLE": str(self.ca_bundle)}


class AzureSandbox(StandIn):
    server_name = "azure-sandbox"
    logger_name = "sandbox.azure"
    tls_common_name = "azure-sandbox"
    ca_common_name = "azure-sandbox-ca"

    def __init__(self, config: AzureConfig | None = None, *, kubernetes: "Sandbox | None" = None) -> None:
        self.config: AzureConfig = config or AzureConfig()
        super().__init__(self.config)
        self.kubernetes = kubernetes
        self.lock = threading.RLock()
        self.clock = Clock(self.config.speed, self.stopping)
        self.operations = Operations(self.clock)
        self.provisioner = Provisioner(self)
        self.rate_limits = arm.RateLimits()
        self.vcpu_quota = self.config.vcpu_quota
        self.nodes = KubeNodes(kubernetes, self.clock) if kubernetes is not None else None
        if kubernetes is not None:
            kubernetes.bearer_checks.append(self._aks_login)
        app = Application(self.config.tenant_id, self.config.client_id, self.config.client_secret, _guid())
        self.identity = Identity(app, lambda: self.url, lifetime=self.config.token_lifetime,
                                 extra_audiences=lambda: (self.url, f"{self.url}/"))
        self._clusters: dict[tuple[str, str, str], ManagedCluster] = {}
        self._groups = {self.config.resource_group.lower()}
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.ca_bundle: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "AzureSandbox":
        self.start_server()
        assert self.ca is not None
        self._tmp = tempfile.TemporaryDirectory(prefix="azure-sandbox-")
        self.ca_bundle = Path(self._tmp.name, "ca.crt")
        self.ca_bundle.write_bytes(self.ca.cert_pem)
        if self.config.demo:
            self.add_demo_cluster()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.stop_server()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "AzureSandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the service hooks (see common.standin) ----------------------------------------------------

    def verb(self, request: Request) -> str:
        """GET of a collection is `list`; PUT `update`; POST actions `create` (ARM counts them as writes)."""
        if request.method == "GET":
            last = request.path.rstrip("/").rsplit("/", 1)[-1].lower()
            return "list" if last in ("managedclusters", "agentpools") else "get"
        return {"PUT": "update", "POST": "create", "DELETE": "delete", "PATCH": "patch"}.get(
            request.method, request.method.lower())

    def authenticate(self, request: Request) -> None:
        """ARM wants a bearer token from the tenant; Entra ID's endpoints and /_sandbox do not."""
        if request.path.startswith("/_sandbox") or self.identity.handles(request.path):
            return
        request.state["claims"] = self.identity.verify(request.headers.get("Authorization"))

    def serve(self, request: Request, responder: Handler) -> int:
        if self.identity.handles(request.path):
            return responder.send_json(*self.identity.answer(request.method, request.path, request.body))
        answer = arm.serve(self, request)
        if answer.body is None:
            return responder.send_bytes(answer.status, b"", "application/json", answer.headers)
        return responder.send_json(answer.status, answer.body, answer.headers)

    def render_error(self, error: HttpError) -> tuple[int, bytes, str, dict[str, str]]:
        body: dict[str, Any] = {"code": error.reason, "message": error.message}
        if isinstance(error, ArmError) and error.target:
            body["target"] = error.target
        return error.code, self.encode({"error": body}), "application/json; charset=utf-8", dict(error.headers)

    def fault_error(self, fault: Fault) -> HttpError:
        """ARM's throttling answer for a 429 (Retry-After; the remaining-requests header is 0), its gateway
        errors for 5xx."""
        status = fault.status or 500
        headers = {}
        if fault.retry_after is not None or status == 429:
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        if status == 429:
            kind = "write" if fault.verb == "write" or fault.verb in WRITE_VERBS else "read"
            return ArmError(429, "SubscriptionRequestsThrottled",
                            f"Number of '{kind}' requests for subscription '{self.config.subscription_id}' actor "
                            f"'{self.config.client_id}' exceeded. Please try again after '{headers['Retry-After']}' "
                            f"seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling "
                            f"for additional information.", headers=headers)
        code, message = _FAULT_MESSAGES.get(status, (reason_for(status), f"Injected fault {status}."))
        return ArmError(status, code, message, headers=headers)

    def answer_headers(self, request: Request) -> dict[str, str]:
        if self.identity.handles(request.path):
            return {"x-ms-request-id": _guid()}
        return arm.arm_headers(self, request, self.verb(request))

    def admin(self, request: Request) -> tuple[int, Any] | None:
        """`/_sandbox/operation-faults`: POST {"code", "message", "name"?, "pool"?, "times"?}; DELETE clears."""
        if request.path.rstrip("/") != "/_sandbox/operation-faults":
            return None
        if request.method == "DELETE":
            self.operations.clear_faults()
            return 200, {"cleared": True}
        if request.method != "POST":
            return None
        try:
            spec = json.loads(request.body or b"{}")
            fault = self.operations.fail_next(**spec)
        except (ValueError, TypeError) as exc:
            raise HttpError(400, "BadRequest", f"operation fault: {exc}") from None
        return 201, fault.__dict__

    def logged_body(self, request: Request) -> Any:
        """Token requests are logged without the client secret."""
        if request.content_type == "application/x-www-form-urlencoded" and b"client_secret=" in request.body:
            form = urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            return urllib.parse.urlencode([(k, "REDACTED" if k == "client_secret" else v) for k, v in form])
        return super().logged_body(request)

    def encode(self, body: Any) -> bytes:
        return json.dumps(body, separators=(",", ":")).encode()

    # -- the estate ----------------------------------------------------------------------------------

    def add_cluster(self, name: str, *, resource_group: str | None = None, pools: list[AgentPool] = (),
                    aad: bool = False) -> ManagedCluster:
        """A managed cluster with these pools (their Nodes are not created: describe ones that exist)."""
        group = resource_group or self.config.resource_group
        cluster = ManagedCluster(self.config.subscription_id, group, name, self.config.location,
                                 self.config.tenant_id, tags={"environment": "sandbox"}, aad=aad)
        for pool in pools:
            cluster.pools[pool.name] = pool
        with self.lock:
            self._groups.add(group.lower())
            self._clusters[cluster.key] = cluster
        return cluster

    def add_demo_cluster(self) -> ManagedCluster:
        """The demo cluster, describing the attached sandbox's Nodes (else the demo manifests' Nodes)."""
        nodes = self.nodes.nodes() if self.nodes is not None else demo.manifest_nodes()
        cluster = self.add_cluster(self.config.cluster_name, aad=self.config.aad)
        for pool in demo.describe(nodes, cluster.id):
            cluster.pools[pool.name] = pool
        return cluster

    def clusters(self) -> list[ManagedCluster]:
        with self.lock:
            return list(self._clusters.values())

    def cluster(self, resource_group: str | None = None, name: str | None = None) -> ManagedCluster | None:
        key = (self.config.subscription_id.lower(), (resource_group or self.config.resource_group).lower(),
               (name or self.config.cluster_name).lower())
        with self.lock:
            return self._clusters.get(key)

    def pool(self, name: str, cluster: ManagedCluster | None = None) -> AgentPool | None:
        """An agent pool of `cluster` (default: the demo cluster) (test helper)."""
        owner = cluster or self.cluster()
        return owner.pool(name) if owner is not None else None

    def has_resource_group(self, name: str) -> bool:
        with self.lock:
            return name.lower() in self._groups

    def vcpus_in_use(self, cluster: ManagedCluster, *, except_pool: AgentPool | None = None) -> int:
        """vCPUs the subscription's pools use in the cluster's region (their stored counts)."""
        with self.lock:
            return sum(c.vcpus_in_use(except_pool=except_pool.name if except_pool and c is cluster else None)
                       for c in self._clusters.values() if c.location == cluster.location)

    # -- client configuration ----------------------------------------------------------------------

    def credentials(self) -> AzureCredentials:
        assert self.ca_bundle is not None, "sandbox not started"
        return AzureCredentials(self.config.tenant_id, self.config.client_id, self.config.client_secret,
                                self.url, self.config.subscription_id, self.url, self.ca_bundle)

    def kubeconfig_for(self, cluster: ManagedCluster, role: str) -> dict:
        """The kubeconfig listClusterUser/AdminCredential returns: the attached Kubernetes sandbox's API
        (else the cluster's FQDN, which nothing serves), named as AKS names its entries."""
        server, cluster_entry, user = f"https://{cluster.fqdn}:443", {}, {}
        if self.kubernetes is not None:
            source = self.kubernetes.kubeconfig()
            cluster_entry = dict(source["clusters"][0]["cluster"])
            server, user = cluster_entry.pop("server"), dict(source["users"][0]["user"])
        user_name = f"cluster{role.capitalize()}_{cluster.resource_group}_{cluster.name}"
        if cluster.aad and role == "user":
            user = kubelogin_user(self.config.tenant_id)
        return {"apiVersion": "v1",
                "clusters": [{"cluster": {**cluster_entry, "server": server}, "name": cluster.name}],
                "contexts": [{"context": {"cluster": cluster.name, "user": user_name}, "name": cluster.name}],
                "current-context": cluster.name, "kind": "Config", "preferences": {},
                "users": [{"name": user_name, "user": user}]}

    def _aks_login(self, token: str) -> bool:
        """The attached API server's check of an Entra token, when a cluster on it is AAD-enabled."""
        return any(c.aad for c in self.clusters()) and self.identity.accepts(token, AKS_SERVER_APP)


def kubelogin_user(tenant_id: str) -> dict:
    """An AAD cluster's user credentials log in through kubelogin (`format=exec`), as AKS writes them."""
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
                     "args": ["get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_APP,
                              "--client-id", AZURE_CLI_CLIENT, "--tenant-id", tenant_id, "--login", "devicecode"],
                     "env": None, "installHint": "kubelogin is not installed which is required to connect to "
                                                 "AAD enabled cluster.", "interactiveMode": "IfAvailable",
                     "provideClusterInfo": False}}
