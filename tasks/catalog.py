"""The estate: environments, their clusters, approval policies, freeze windows and services (catalog.yaml).

`RUNBOOKS_CATALOG` points at another file. Everything is validated on load, so a typo in the catalog is a
clear error before any runbook touches a cluster.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import CatalogError, TargetNotFound

M = TypeVar("M", bound=BaseModel)
DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "catalog.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KubeconfigCluster(_Strict):
    """A cluster reached through a kubeconfig context (the sandbox, or `az aks get-credentials`)."""
    kind: Literal["kubeconfig"] = "kubeconfig"
    context: str | None = None
    kubeconfig: str | None = Field(None, description="path; default: $KUBECONFIG or ~/.kube/config")


class InClusterCluster(_Strict):
    kind: Literal["in-cluster"] = "in-cluster"


class AksCluster(_Strict):
    """An AKS cluster: credentials come from ARM (`listClusterUserCredential`) with DefaultAzureCredential."""
    kind: Literal["aks"] = "aks"
    subscription_id: str
    resource_group: str
    name: str


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


class Environment(_Strict):
    cluster: Cluster = Field(discriminator="kind")
    approval: ApprovalPolicy = ApprovalPolicy()
    freeze_windows: tuple[FreezeWindow, ...] = ()
    cooldown_seconds: int = Field(300, ge=0, description="after a completed run on a target, refuse new runs")
    verify_timeout_seconds: int = Field(300, gt=0)
    production: bool = False
    notifications: tuple[Notification, ...] = ()
    services: dict[str, Service] = {}


class Catalog(_Strict):
    environments: dict[str, Environment]

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


def catalog_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("RUNBOOKS_CATALOG") or DEFAULT_CATALOG)


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
    return load_yaml_model(catalog_path(path), Catalog, CatalogError, "catalog",
                           "set RUNBOOKS_CATALOG to point at one")
