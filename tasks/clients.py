"""The one place that builds API clients, from the catalog and the standard credential sources.

Kubernetes: a kubeconfig context, in-cluster config, or an AKS cluster's user credentials from ARM. Azure:
`DefaultAzureCredential` with the cluster's cloud (or explicit authority), and a `ContainerServiceClient`
for its ARM endpoint, both trusting the catalog's CA bundle when it names one (never turning verification
off). Tokens and keys found on the way are registered for log redaction before anything logs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .catalog import AZURE_CLOUDS, AksCluster, Environment, InClusterCluster, KubeconfigCluster
from .errors import CatalogError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.containerservice import ContainerServiceClient

ARM_POLLING_SECONDS = 5.0        # how often a long-running operation is polled when ARM sends no Retry-After


def kubernetes_client(environment: Environment, *, kubeconfig: str | Path | None = None,
                      credential: "TokenCredential | None" = None) -> k8s.ApiClient:
    """An ApiClient for the environment's cluster. `kubeconfig` overrides the catalog's path and $KUBECONFIG;
    `credential` is the run's Azure credential for an AKS cluster (one is built when not given)."""
    cluster = environment.cluster
    if isinstance(cluster, KubeconfigCluster):
        path = Path(kubeconfig).expanduser() if kubeconfig else cluster.path()
        if not path.exists():
            raise CatalogError(f"kubeconfig not found: {path} (set KUBECONFIG or the catalog's cluster.kubeconfig)")
        try:
            api = client_from_kubeconfig(yaml.safe_load(path.read_text()), context=cluster.context)
        except CatalogError as exc:
            raise CatalogError(f"kubeconfig {path}: {exc}") from exc
    elif isinstance(cluster, InClusterCluster):
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        api = k8s.ApiClient(configuration)
    elif isinstance(cluster, AksCluster):
        from .azure.clusters import cluster_kubernetes_client
        credential = credential or azure_credential(cluster)
        api = cluster_kubernetes_client(arm_client(cluster, credential), cluster, credential)
    else:  # pragma: no cover - the catalog's discriminator admits nothing else
        raise CatalogError(f"unsupported cluster kind: {cluster!r}")
    _register_client_secrets(api)
    return api


def client_from_kubeconfig(config_dict: dict, *, context: str | None = None, credential: "TokenCredential | None" = None,
                           server_app_id: str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig. A user that logs in through kubelogin (an AAD-enabled AKS cluster's
    user credentials) gets an Entra token for the API server's application from `credential` instead: no
    exec plugin, renewed before each request as it nears expiry."""
    _register_kubeconfig_secrets(config_dict)
    server_id = _aad_server_id(config_dict, context, server_app_id)
    if server_id is not None:
        if credential is None:
            raise CatalogError("the kubeconfig logs in with Entra ID (kubelogin); an Azure credential is needed")
        config_dict = _without_login_plugins(config_dict)
    try:
        api = k8s_config.new_client_from_config_dict(config_dict, context=context)
    except k8s_config.ConfigException as exc:
        raise CatalogError(str(exc)) from exc
    if server_id is not None:
        _use_entra_tokens(api.configuration, credential, f"{server_id}/.default")
    return api


def azure_credential(cluster: AksCluster) -> "TokenCredential":
    """DefaultAzureCredential for the cluster's authority, trusting its CA bundle.

    A custom authority (the sandbox, Azure Stack) turns MSAL's instance discovery off: with it on, MSAL asks
    login.microsoftonline.com to validate the authority. A client secret in the environment is only ever
    sent to the authority it belongs to (AZURE_AUTHORITY_HOST, else the public cloud's): otherwise refused.
    """
    from azure.identity import DefaultAzureCredential
    authority = cluster.authority_url()
    _check_secret_goes_home(authority)
    options: dict[str, Any] = {"authority": authority}
    if cluster.custom_authority:
        options["disable_instance_discovery"] = True
    if cluster.ca_bundle:
        options["connection_verify"] = _ca_bundle(cluster)
    return DefaultAzureCredential(**options)


def arm_client(cluster: AksCluster, credential: "TokenCredential | None" = None) -> "ContainerServiceClient":
    """The AKS management client for the cluster's ARM endpoint. Its own retries are off: transient errors
    (429 with Retry-After, 5xx) are retried in one place, tasks/calls.py, and logged in the run."""
    from azure.mgmt.containerservice import ContainerServiceClient
    options: dict[str, Any] = {"base_url": cluster.arm_url(), "credential_scopes": [cluster.arm_scope()],
                               "polling_interval": cluster.operation_poll_seconds, "retry_total": 0}
    if cluster.ca_bundle:
        options["connection_verify"] = _ca_bundle(cluster)
    return ContainerServiceClient(credential or azure_credential(cluster), cluster.subscription_id, **options)


def _check_secret_goes_home(authority: str) -> None:
    secret = os.environ.get("AZURE_CLIENT_SECRET")
    if not secret:
        return
    _register(secret)
    home = _normalise(os.environ.get("AZURE_AUTHORITY_HOST") or AZURE_CLOUDS["public"][1])
    if home != _normalise(authority):
        raise CatalogError(f"AZURE_CLIENT_SECRET belongs to the authority {home} (AZURE_AUTHORITY_HOST), but the "
                           f"catalog's cluster uses {authority}: refusing to send the secret there. Set AZURE_* for "
                           "that tenant, or the cluster's cloud/authority in the catalog")


def _normalise(authority: str) -> str:
    return (authority if "://" in authority else f"https://{authority}").rstrip("/").lower()


def _ca_bundle(cluster: AksCluster) -> str:
    path = Path(cluster.ca_bundle or "").expanduser()
    if not path.is_file():
        raise CatalogError(f"AKS cluster {cluster.name}: ca_bundle {path} not found")
    return str(path)


def _user_of(config_dict: dict, context: str | None) -> dict:
    name = context or config_dict.get("current-context")
    ctx = next((c.get("context") or {} for c in config_dict.get("contexts") or [] if c.get("name") == name), {})
    return next((u.get("user") or {} for u in config_dict.get("users") or [] if u.get("name") == ctx.get("user")), {})


def _aad_server_id(config_dict: dict, context: str | None, default: str | None) -> str | None:
    """The Entra application a kubelogin user (exec plugin, or the legacy `azure` auth provider) logs in to."""
    user = _user_of(config_dict, context)
    exec_ = user.get("exec") or {}
    if Path(str(exec_.get("command", ""))).name.startswith("kubelogin"):
        args = [str(a) for a in exec_.get("args") or []]
        return args[args.index("--server-id") + 1] if "--server-id" in args[:-1] else default
    provider = user.get("auth-provider") or {}
    if provider.get("name") == "azure":
        return (provider.get("config") or {}).get("apiserver-id") or default
    return None


def _without_login_plugins(config_dict: dict) -> dict:
    users = [{**u, "user": {k: v for k, v in (u.get("user") or {}).items() if k not in ("exec", "auth-provider")}}
             for u in config_dict.get("users") or []]
    return {**config_dict, "users": users}


def _use_entra_tokens(configuration: k8s.Configuration, credential: "TokenCredential", scope: str) -> None:
    """Bearer tokens from `credential`, asked for before every request (azure-identity answers from its
    cache until the token nears expiry), so long watches and slow runs never send an expired one."""
    def refresh(config: k8s.Configuration) -> None:
        token = credential.get_token(scope).token
        _register(token)
        config.api_key["authorization"] = f"Bearer {token}"
    configuration.refresh_api_key_hook = refresh
    refresh(configuration)


def _register(value: str | None) -> None:
    if not value:
        return
    from .redaction import register_secret
    register_secret(value)


def _register_kubeconfig_secrets(config_dict: dict) -> None:
    for user in (config_dict or {}).get("users") or []:
        spec = user.get("user") or {}
        for key in ("token", "password", "client-key-data"):
            _register(spec.get(key))


def _register_client_secrets(api: k8s.ApiClient) -> None:
    auth = (api.configuration.api_key or {}).get("authorization", "")
    _register(auth.removeprefix("Bearer ").strip())
