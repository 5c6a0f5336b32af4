"""An AKS estate for the scaling tests: the Kubernetes sandbox (demo estate, HTTPS, a required token) with the
Azure stand-in serving it as an AKS cluster, azure-identity's environment set for the stand-in's service
principal (authority first), and catalogs whose production environment is that AKS cluster."""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from sandbox.azure.env import azure_identity_env
from sandbox.azure.server import AzureSandbox
from sandbox.catalog import DEMO_SERVICES, aks_cluster
from sandbox.server import DEMO_MANIFESTS, Sandbox
from tasks.catalog import AksCluster
from tests.conftest import start_sandbox
from tests.sandbox.azure_helpers import start_azure

KUBE_TOKEN = "kube-admin-t0ken"
NOW = dt.datetime.now(dt.timezone.utc)
# Requests that ask for nothing to change, though sent as POST: a token grant, reading user credentials.
READ_ONLY_POSTS = ("/oauth2/v2.0/token", "/listclusterusercredential")


def start_estate(**azure_overrides: Any) -> tuple[Sandbox, AzureSandbox]:
    kube = start_sandbox(manifests=(DEMO_MANIFESTS,), tls=True, token=KUBE_TOKEN)
    return kube, start_azure(kube, **azure_overrides)


@contextmanager
def running_estate(**azure_overrides: Any) -> Iterator[tuple[Sandbox, AzureSandbox]]:
    """`start_estate`, both stand-ins stopped on exit."""
    kube, azure = start_estate(**azure_overrides)
    try:
        yield kube, azure
    finally:
        azure.stop()
        kube.stop()


def use_identity(azure: AzureSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in's identity as `runbooks` adopts it (sandbox/azure/env.py), undone after the test."""
    env = {k: str(v) for k, v in azure.credentials().env().items()}
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in azure_identity_env(env).items():
        monkeypatch.setenv(name, value)


def aks_entry(azure: AzureSandbox, name: str | None = None) -> dict:
    entry = aks_cluster(azure.credentials(), azure.config.resource_group, name or azure.config.cluster_name)
    return {**entry, "operation_poll_seconds": 0.02}


def aks(azure: AzureSandbox, name: str | None = None) -> AksCluster:
    return AksCluster.model_validate(aks_entry(azure, name))


def write_aks_catalog(kube: Sandbox, azure: AzureSandbox, directory: Path, *, approval: str = "auto",
                      scaling: dict | None = None, cluster: str | None = None, **overrides: Any) -> Path:
    """One environment, `production`, on the stand-in's AKS cluster; `staging` (auto) through the kubeconfig
    on other namespaces, to show a kubeconfig environment has no node pools."""
    kubeconfig = kube.write_kubeconfig(directory / "kubeconfig")
    production = {"cluster": aks_entry(azure, cluster), "production": True, "cooldown_seconds": 0,
                  "verify_timeout_seconds": 30, "services": DEMO_SERVICES,
                  "approval": {"policy": approval, "timeout_seconds": 60},
                  "scaling": scaling or {"max_replicas": 40, "max_nodes": 14}, **overrides}
    staging = {"cluster": {"kind": "kubeconfig", "kubeconfig": str(kubeconfig), "context": "sandbox"},
               "approval": {"policy": "auto"}, "cooldown_seconds": 0,
               "services": {"cart": {"namespace": "default", "deployment": "cart"}}}
    path = directory / f"catalog-aks-{approval}.yaml"
    path.write_text(yaml.safe_dump({"environments": {"production": production, "staging": staging}}))
    return path


def changes(azure: AzureSandbox, since: float) -> list:
    """The Azure stand-in's writes since `since`, but for the POSTs that change nothing (READ_ONLY_POSTS)."""
    return [e for e in azure.requests.writes(since) if not e.path.lower().endswith(READ_ONLY_POSTS)]


def pool_nodes(kube: Sandbox, pool: str) -> list[str]:
    return sorted(n["metadata"]["name"] for n in kube.list("Node")
                  if n["metadata"]["labels"].get("kubernetes.azure.com/agentpool") == pool)
