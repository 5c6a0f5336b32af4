"""The catalog of the sandbox's demo estate, written next to its kubeconfig.

Production and staging live in their own namespaces (`payments`, `checkout` and their `-staging`
copies), so a staging run, which is auto-approved, can never change production. When the Azure stand-in
runs, production is the AKS cluster it serves (reached through ARM, its Entra ID and its CA, as a real AKS
cluster is), while staging stays a kubeconfig context."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from .azure.server import AzureCredentials

DEMO_SERVICES = {
    "payments-api": {"namespace": "payments", "deployment": "payments-api", "tier": "critical",
                     "github_repo": "example/payments-api"},
    "checkout-web": {"namespace": "checkout", "deployment": "checkout-web", "tier": "critical",
                     "github_repo": "example/checkout-web"},
    "cart": {"namespace": "checkout", "deployment": "cart"},
}
STAGING_SUFFIX = "-staging"
DEMO_STAGING_SERVICES = {name: {**service, "namespace": service["namespace"] + STAGING_SUFFIX}
                         for name, service in DEMO_SERVICES.items()}
# Scaling quotas and blast radius (plans/scaling.py): a change beyond 2x up or 50% down needs the next
# approval level, even in auto-approved staging.
DEMO_SCALING = {"production": {"max_replicas": 30, "max_nodes": 12},
                "staging": {"max_replicas": 10, "max_nodes": 12}}


def aks_cluster(azure: "AzureCredentials", resource_group: str, name: str) -> dict:
    """The catalog entry of an AKS cluster the Azure stand-in serves: its ARM endpoint, Entra authority and CA."""
    return {"kind": "aks", "subscription_id": azure.subscription_id, "resource_group": resource_group,
            "name": name, "arm_endpoint": azure.arm_endpoint, "authority": azure.authority,
            "ca_bundle": str(azure.ca_bundle), "operation_poll_seconds": 0.5}


def demo_catalog(kubeconfig: Path, *, context: str = "sandbox", production_cluster: dict | None = None) -> dict:
    """Both environments; production on `production_cluster` (an `aks_cluster(...)`) when given."""
    cluster = {"kind": "kubeconfig", "kubeconfig": str(kubeconfig), "context": context}
    return {"environments": {
        "production": {"cluster": production_cluster or cluster, "production": True,
                       "approval": {"policy": "one", "timeout_seconds": 900, "escalate_after_seconds": 300},
                       "cooldown_seconds": 300, "verify_timeout_seconds": 300, "services": DEMO_SERVICES,
                       "scaling": DEMO_SCALING["production"]},
        "staging": {"cluster": cluster, "approval": {"policy": "auto"}, "cooldown_seconds": 0,
                    "verify_timeout_seconds": 300, "services": DEMO_STAGING_SERVICES,
                    "scaling": DEMO_SCALING["staging"]},
    }}


def write_demo_catalog(path: Path, kubeconfig: Path, *, production_cluster: dict | None = None) -> Path:
    where = "production on the AKS cluster the Azure stand-in serves, staging through the kubeconfig" \
        if production_cluster else "both environments on the sandbox"
    path.write_text(f"# Written by `runbooks sandbox`: the demo estate, {where}, each in its own namespaces.\n"
                    + yaml.safe_dump(demo_catalog(kubeconfig.resolve(), production_cluster=production_cluster),
                                     sort_keys=False))
    return path
