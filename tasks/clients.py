"""The one place that builds API clients, from the catalog and the standard credential sources.

Kubernetes: a kubeconfig context, in-cluster config, or AKS user credentials fetched from ARM with
DefaultAzureCredential. Tokens found on the way are registered for log redaction before anything logs.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .catalog import AksCluster, Environment, InClusterCluster, KubeconfigCluster
from .errors import CatalogError


def kubernetes_client(environment: Environment, *, kubeconfig: str | Path | None = None) -> k8s.ApiClient:
    """An ApiClient for the environment's cluster. `kubeconfig` overrides the catalog's path and $KUBECONFIG."""
    cluster = environment.cluster
    if isinstance(cluster, KubeconfigCluster):
        path = Path(kubeconfig).expanduser() if kubeconfig else cluster.path()
        if not path.exists():
            raise CatalogError(f"kubeconfig not found: {path} (set KUBECONFIG or the catalog's cluster.kubeconfig)")
        config_dict = yaml.safe_load(path.read_text())
        _register_kubeconfig_secrets(config_dict)
        try:
            api = k8s_config.new_client_from_config_dict(config_dict, context=cluster.context)
        except k8s_config.ConfigException as exc:
            raise CatalogError(f"kubeconfig {path}: {exc}") from exc
    elif isinstance(cluster, InClusterCluster):
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        api = k8s.ApiClient(configuration)
    elif isinstance(cluster, AksCluster):
        api = _aks_client(cluster)
    else:  # pragma: no cover - the catalog's discriminator admits nothing else
        raise CatalogError(f"unsupported cluster kind: {cluster!r}")
    _register_client_secrets(api)
    return api


def _aks_client(cluster: AksCluster) -> k8s.ApiClient:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.containerservice import ContainerServiceClient

    arm = ContainerServiceClient(DefaultAzureCredential(), cluster.subscription_id)
    result = arm.managed_clusters.list_cluster_user_credentials(cluster.resource_group, cluster.name)
    if not result.kubeconfigs:
        raise CatalogError(f"AKS cluster {cluster.name} returned no user credentials")
    config_dict = yaml.safe_load(result.kubeconfigs[0].value)
    _register_kubeconfig_secrets(config_dict)
    return k8s_config.new_client_from_config_dict(config_dict)


def _register(value: str | None) -> None:
    if not value:
        return
    try:
        from .redaction import register_secret
    except ImportError:  # redaction is installed with the package; absent only in partial checkouts
        return
    register_secret(value)


def _register_kubeconfig_secrets(config_dict: dict) -> None:
    for user in (config_dict or {}).get("users") or []:
        spec = user.get("user") or {}
        for key in ("token", "password", "client-key-data"):
            _register(spec.get(key))


def _register_client_secrets(api: k8s.ApiClient) -> None:
    auth = (api.configuration.api_key or {}).get("authorization", "")
    _register(auth.removeprefix("Bearer ").strip())
