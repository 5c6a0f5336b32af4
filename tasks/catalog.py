"""The estate: environments, their clusters, approval policies, freeze windows and services.

Which catalog is in use is always explicit: `RUNBOOKS_CATALOG` (or a command's `--catalog`) names it,
every run prints and reports it, and nothing falls back to the repository's example `catalog.yaml`
(which describes a real AKS estate). Everything is validated on load, so a typo in the catalog is a clear
error before any runbook touches a cluster; so is a catalog in which two entries resolve to the same
object with different approval policies or freeze windows (one would bypass the other's guards).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plans.chaos import BlastRadius
from plans.scaling import ScalingPolicy
from plans.targets import DeploymentTarget, HpaTarget, NodePoolTarget, RepositoryTarget

from .errors import CatalogError, TargetNotFound
from .github.settings import GitHubConnection, ServiceGitHub, check_repository

M = TypeVar("M", bound=BaseModel)
EXAMPLE_CATALOG = Path(__file__).resolve().parent.parent / "catalog.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KubeconfigCluster(_Strict):
    """A cluster reached through a named kubeconfig context (the sandbox, or `az aks get-credentials`).

    The context is required: "whatever context the shell had" is how a runbook hits the wrong cluster.
    """
    kind: Literal["kubeconfig"] = "kubeconfig"
    context: str = Field(min_length=1, description="the kubeconfig context to use; required")
    kubeconfig: str | None = Field(None, description="path; default: $KUBECONFIG or ~/.kube/config")

    def path(self) -> Path:
        return Path(self.kubeconfig or os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config").expanduser()

    def identity(self) -> str:
        """The API server URL of the context, when the kubeconfig can be read; else path#context."""
        try:
            config = yaml.safe_load(self.path().read_text()) or {}
            context = next(c["context"] for c in config.get("contexts") or [] if c.get("name") == self.context)
            cluster = next(c["cluster"] for c in config.get("clusters") or [] if c.get("name") == context["cluster"])
            return str(cluster["server"]).rstrip("/")
        except (OSError, yaml.YAMLError, StopIteration, KeyError, TypeError, AttributeError):
            return f"kubeconfig:{self.path()}#{self.context}"


class InClusterCluster(_Strict):
    kind: Literal["in-cluster"] = "in-cluster"

    def identity(self) -> str:
        return "in-cluster"


# Azure's clouds: (Resource Manager endpoint, Entra ID authority host). Real users run sovereign clouds.
AZURE_CLOUDS = {"public": ("https://management.azure.com", "login.microsoftonline.com"),
                "china": ("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
                "usgovernment": ("https://management.usgovcloudapi.net", "login.microsoftonline.us")}
# The Entra application every AKS-managed AAD cluster's API server accepts tokens for (what kubelogin asks for).
AKS_AAD_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"


class AksCluster(_Strict):
    """An AKS cluster by subscription, resource group and name. ARM and Entra ID come from its cloud (or an
    explicit endpoint and authority: sovereign clouds, Azure Stack, the sandbox's stand-in); credentials from
    DefaultAzureCredential; Kubernetes access from the cluster's user credentials (`listClusterUserCredential`),
    with an Entra token for the AKS server application when the cluster is AAD-enabled."""
    kind: Literal["aks"] = "aks"
    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    name: str = Field(min_length=1)
    cloud: Literal["public", "china", "usgovernment"] = Field(
        "public", description="which Azure cloud: its ARM endpoint and Entra authority")
    arm_endpoint: str | None = Field(None, description="ARM's https URL, instead of the cloud's")
    authority: str | None = Field(None, description="Entra ID authority (https URL or host), instead of the cloud's")
    ca_bundle: str | None = Field(None, description="PEM file trusted for ARM and Entra ID (a private CA)")
    aad_server_app_id: str = Field(AKS_AAD_SERVER_APP, description="the API server's Entra application (AAD "
                                   "clusters): the scope of the Kubernetes token, as kubelogin's --server-id")
    operation_poll_seconds: float = Field(5.0, gt=0, description="how often to poll a long-running ARM "
                                          "operation when ARM's answer carries no Retry-After")

    @field_validator("arm_endpoint", "authority")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        """azure-core sends bearer tokens over TLS only; a host alone means https."""
        if value is None:
            return None
        url = value.rstrip("/") if "://" in value else f"https://{value.strip('/')}"
        if not url.startswith("https://"):
            raise ValueError(f"{value!r} must be an https URL (Azure SDKs send tokens over TLS only)")
        return url

    def identity(self) -> str:
        """The managed cluster's ARM resource id (case-insensitive in ARM, so lower-cased)."""
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/"
                f"Microsoft.ContainerService/managedClusters/{self.name}").lower()

    def arm_url(self) -> str:
        return self.arm_endpoint or AZURE_CLOUDS[self.cloud][0]

    def arm_scope(self) -> str:
        """The token scope for ARM: its endpoint's `.default` (management.azure.com/.default in public Azure)."""
        return f"{self.arm_url()}/.default"

    def authority_url(self) -> str:
        return self.authority or f"https://{AZURE_CLOUDS[self.cloud][1]}"

    @property
    def custom_authority(self) -> bool:
        """An authority no Azure cloud knows: MSAL must not ask login.microsoftonline.com to validate it."""
        return self.authority_url() not in {f"https://{host}" for _, host in AZURE_CLOUDS.values()}


Cluster = KubeconfigCluster | InClusterCluster | AksCluster


class ApprovalPolicy(_Strict):
    policy: Literal["auto", "one", "two"] = "one"
    timeout_seconds: int = Field(900, gt=0, description="unanswered gate aborts with no change after this")
    escalate_after_seconds: int | None = Field(None, gt=0, description="notify escalation after this")


class FreezeWindow(_Strict):
    """A change freeze: no runbook mutates this environment between start and end (UTC)."""
    start: dt.datetime
    end: dt.datetime
    reason: str = "change freeze"

    @model_validator(mode="after")
    def _ordered(self) -> "FreezeWindow":
        if self.end <= self.start:
            raise ValueError(f"freeze window ends ({self.end}) before it starts ({self.start})")
        return self

    def covers(self, moment: dt.datetime) -> bool:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=dt.timezone.utc)
        end = self.end if self.end.tzinfo else self.end.replace(tzinfo=dt.timezone.utc)
        return start <= moment < end


class Notification(_Strict):
    """Where gate, escalation and failure notices go: a Prefect notification block, by type and name."""
    kind: Literal["slack", "teams"]
    block: str = Field(description="name of a Prefect SlackWebhook / MicrosoftTeamsWebhook block")
    events: tuple[Literal["gate", "escalation", "failure", "success"], ...] = ("gate", "escalation", "failure")


class Service(_Strict):
    namespace: str
    deployment: str
    health_url: str | None = None
    github_repo: str | None = None
    tier: Literal["critical", "standard"] = "standard"
    github: ServiceGitHub | None = Field(None, description="CI workflows and rollback workflow (needs github_repo)")

    @model_validator(mode="after")
    def _github_needs_repo(self) -> "Service":
        check_repository(self.github_repo)
        if self.github is not None and not self.github_repo:
            raise ValueError("github: (workflows) needs github_repo: owner/name")
        return self


class CertificatePolicy(_Strict):
    """How the certificate-renewal runbook treats this environment's TLS certificates."""
    renew_within_days: int = Field(30, gt=0, description="renew a certificate that expires within this many days")
    owner: str = Field("the environment's platform team", min_length=1,
                       description="who must act on a certificate the runbook cannot renew (no cert-manager Certificate)")


class Environment(_Strict):
    cluster: Cluster = Field(discriminator="kind")
    approval: ApprovalPolicy = ApprovalPolicy()
    freeze_windows: tuple[FreezeWindow, ...] = ()
    cooldown_seconds: int = Field(300, ge=0, description="after a completed run on a target, refuse new runs")
    verify_timeout_seconds: int = Field(300, gt=0)
    production: bool = False
    notifications: tuple[Notification, ...] = ()
    services: dict[str, Service] = {}
    certificates: CertificatePolicy = CertificatePolicy()
    scaling: ScalingPolicy = ScalingPolicy()
    github: GitHubConnection | None = Field(None, description="GitHub or GHES and its credentials; without it, "
                                            "no runbook calls GitHub in this environment")


class ChaosSettings(_Strict):
    """The chaos drill's experiments folder (relative to the catalog file) and how much a drill may take away."""
    experiments: str = Field(min_length=1, description="folder of experiment files, relative to the catalog")
    blast_radius: BlastRadius = BlastRadius()


class Catalog(_Strict):
    environments: dict[str, Environment]
    chaos: ChaosSettings | None = None
    source: str = Field("", description="set by the loader: the file this catalog came from")

    @model_validator(mode="after")
    def _one_policy_per_object(self) -> "Catalog":
        """Two entries for one Deployment must share approval policy and freeze windows."""
        seen: dict[tuple[str, str, str], tuple[str, str, Environment]] = {}
        for env_name, env in sorted(self.environments.items()):
            cluster = env.cluster.identity()
            for svc_name, svc in sorted(env.services.items()):
                key = (cluster, svc.namespace, svc.deployment)
                if key in seen:
                    other_env, other_svc, other = seen[key]
                    if (other.approval, other.freeze_windows) != (env.approval, env.freeze_windows):
                        raise ValueError(
                            f"{other_env}/{other_svc} and {env_name}/{svc_name} are the same Deployment "
                            f"{svc.namespace}/{svc.deployment} on {cluster} with different approval policies or "
                            "freeze windows; one would bypass the other's guards. Point them at different "
                            "namespaces or clusters, or give them the same policy")
                else:
                    seen[key] = (env_name, svc_name, env)
        return self

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            raise TargetNotFound(f"unknown environment {name!r}; allowed: {', '.join(sorted(self.environments))}")
        return self.environments[name]

    def service(self, environment: str, name: str) -> Service:
        env = self.environment(environment)
        if name not in env.services:
            allowed = ", ".join(sorted(env.services)) or "(none)"
            raise TargetNotFound(f"unknown service {name!r} in environment {environment!r}; allowed: {allowed}")
        return env.services[name]

    def blast_radius(self) -> BlastRadius:
        """The most a chaos drill may take away (the catalog's, or the default caps)."""
        return self.chaos.blast_radius if self.chaos else BlastRadius()

    def experiments_folder(self) -> Path:
        """The chaos drill's experiments folder; CatalogError when the catalog names none."""
        if self.chaos is None:
            raise CatalogError(f"catalog {self.source} has no `chaos: {{experiments: FOLDER}}`: name the folder of "
                               "chaos experiment files (relative to the catalog)")
        return (Path(self.source).parent / self.chaos.experiments).resolve()

    def deployment_target(self, environment: str, service: str) -> DeploymentTarget:
        """The catalog service as the object it names: cluster identity, namespace, Deployment."""
        env, svc = self.environment(environment), self.service(environment, service)
        return DeploymentTarget(environment=environment, cluster=env.cluster.identity(), service=service,
                                namespace=svc.namespace, deployment=svc.deployment)

    def hpa_target(self, environment: str, service: str, hpa: str) -> HpaTarget:
        """The HorizontalPodAutoscaler `hpa` of a catalog service, as the object it is."""
        target = self.deployment_target(environment, service)
        return HpaTarget(environment=environment, cluster=target.cluster, service=service,
                         namespace=target.namespace, hpa=hpa)

    def node_pool_target(self, environment: str, pool: str) -> NodePoolTarget:
        """An agent pool of the environment's AKS cluster (keyed by the cluster's ARM resource id).

        Raises:
            CatalogError: the environment's cluster is not an AKS cluster.
        """
        cluster = self.environment(environment).cluster
        if not isinstance(cluster, AksCluster):
            aks = sorted(n for n, e in self.environments.items() if isinstance(e.cluster, AksCluster))
            raise CatalogError(f"environment {environment!r} is on a {cluster.kind} cluster, not an AKS cluster (kind: "
                               f"aks), so it has no node pools; environments on AKS: {', '.join(aks) or '(none)'}")
        return NodePoolTarget(environment=environment, cluster=cluster.identity(), pool=pool)

    def repository_target(self, environment: str, repository: str) -> tuple[RepositoryTarget, list[str]]:
        """A repository some service of the environment names, and those services (their CI settings)."""
        env = self.environment(environment)
        services = sorted(name for name, svc in env.services.items() if svc.github_repo == repository)
        if not services:
            allowed = ", ".join(sorted({s.github_repo for s in env.services.values() if s.github_repo})) or "(none)"
            raise TargetNotFound(f"repository {repository!r} is not in environment {environment!r}; allowed: {allowed}")
        if env.github is None:
            raise CatalogError(f"environment {environment!r} has no github: connection (base_url, credentials)")
        return RepositoryTarget(environment=environment, cluster=env.github.host, repository=repository), services


def catalog_path(path: str | Path | None = None) -> Path:
    """The catalog named by `path` or `RUNBOOKS_CATALOG`; there is no silent default.

    Raises:
        CatalogError: neither names one.
    """
    chosen = path or os.environ.get("RUNBOOKS_CATALOG")
    if not chosen:
        raise CatalogError(f"no catalog: set RUNBOOKS_CATALOG (or pass --catalog) to the catalog of the estate to "
                           f"act on; `make run` uses the sandbox's. {EXAMPLE_CATALOG.name} in the repository is an "
                           "example of a real estate and is never used implicitly")
    return Path(chosen).expanduser().resolve()


def load_yaml_model(source: Path, model: type[M], error: type[Exception], what: str, hint: str) -> M:
    """Read a YAML file into a pydantic model; every failure is `error` naming the file (and the field)."""
    try:
        raw = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise error(f"{what} not found: {source} ({hint})") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {source} is not valid YAML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{what} {source} is invalid:\n{exc}") from exc


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate the catalog; errors name the file and the field."""
    source = catalog_path(path)
    catalog = load_yaml_model(source, Catalog, CatalogError, "catalog", "set RUNBOOKS_CATALOG to point at one")
    return catalog.model_copy(update={"source": str(source)})
