"""The ARM resources the stand-in serves, Microsoft.ContainerService/managedClusters and their agentPools, and
their JSON as the resource provider writes it (shaped after the 2026-08-01 examples ManagedClustersGet.json,
AgentPoolsGet.json and AgentPoolsCreate_Update.json)."""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

KUBERNETES_VERSION = "1.31.0"          # what the Kubernetes sandbox's kubelets report (v1.31.0)
NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202501.12.0"
LATEST_NODE_IMAGE = "AKSUbuntu-2204gen2containerd-202502.09.0"
POOL_TYPE = "Microsoft.ContainerService/managedClusters/agentPools"
CLUSTER_TYPE = "Microsoft.ContainerService/managedClusters"     # as ManagedClustersGet.json writes it
NODE_NAME = re.compile(r"^aks-(?P<pool>[a-z][a-z0-9]{0,11})-(?P<digits>\d{8})-vmss(?P<instance>[0-9a-z]{6})$")
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_etag() -> str:
    return str(uuid.uuid4())


def vcpus(vm_size: str) -> int:
    """The vCPUs of a VM size, read from its name as Azure names them (Standard_D8s_v5: 8, Standard_DS1_v2: 1)."""
    match = re.match(r"^Standard_[A-Z]+?(\d+)", vm_size or "", re.IGNORECASE)
    return int(match.group(1)) if match else 2


def instance_suffix(instance: int) -> str:
    """A VMSS instance id as it ends a node name: six base-36 digits (`vmss00000a` is instance 10)."""
    digits = ""
    while True:
        instance, rest = divmod(instance, 36)
        digits = BASE36[rest] + digits
        if not instance:
            return digits.rjust(6, "0")


def instance_of(node_name: str) -> int | None:
    match = NODE_NAME.match(node_name)
    return int(match.group("instance"), 36) if match else None


@dataclass
class AgentPool:
    """One agent pool: the properties its last PUT stored (a PUT replaces them all) and what AKS maintains."""

    name: str
    properties: dict[str, Any]
    digits: str                                 # the 8 digits in its VMSS and node names
    provisioning_state: str = "Succeeded"
    etag: str = field(default_factory=new_etag)
    node_image_version: str = NODE_IMAGE
    next_instance: int = 0                      # VMSS instance ids only grow: a removed node's id is never reused

    @property
    def count(self) -> int:
        return int(self.properties["count"])

    @property
    def mode(self) -> str:
        return self.properties.get("mode", "User")

    @property
    def vmss(self) -> str:
        return f"aks-{self.name}-{self.digits}-vmss"

    def node_name(self, instance: int) -> str:
        return f"{self.vmss}{instance_suffix(instance)}"

    def profile(self) -> dict:
        """The pool's properties as ARM answers them (writable ones as stored, then the read-only ones)."""
        return {**self.properties, "provisioningState": self.provisioning_state, "eTag": self.etag,
                "powerState": {"code": "Running"}, "currentOrchestratorVersion": KUBERNETES_VERSION,
                "nodeImageVersion": self.node_image_version}

    def body(self, cluster: "ManagedCluster") -> dict:
        return {"id": f"{cluster.id}/agentPools/{self.name}", "name": self.name, "type": POOL_TYPE,
                "properties": self.profile()}


@dataclass
class ManagedCluster:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    tenant_id: str
    pools: dict[str, AgentPool] = field(default_factory=dict)
    provisioning_state: str = "Succeeded"
    etag: str = field(default_factory=new_etag)
    tags: dict[str, str] = field(default_factory=dict)
    certificates_rotated: list[str] = field(default_factory=list)   # when each rotation finished (RFC 3339)
    aad: bool = False                  # AKS-managed Entra ID integration: Kubernetes logins with Entra tokens

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourcegroups/{self.resource_group}/providers/"
                f"Microsoft.ContainerService/managedClusters/{self.name}")

    @property
    def key(self) -> tuple[str, str, str]:
        """ARM names are case-insensitive."""
        return self.subscription_id.lower(), self.resource_group.lower(), self.name.lower()

    @property
    def node_resource_group(self) -> str:
        return f"MC_{self.resource_group}_{self.name}_{self.location}"

    @property
    def dns_prefix(self) -> str:
        return f"{self.name[:40]}-{self.resource_group[:20]}-{self.subscription_id[:6]}"

    @property
    def fqdn(self) -> str:
        digest = hashlib.sha256(self.id.lower().encode()).hexdigest()[:8]
        return f"{self.dns_prefix}-{digest}.hcp.{self.location}.azmk8s.io"

    def pool(self, name: str) -> AgentPool | None:
        return self.pools.get(name.lower())

    def vcpus_in_use(self, *, except_pool: str | None = None) -> int:
        return sum(vcpus(p.properties["vmSize"]) * p.count for p in self.pools.values() if p.name != except_pool)

    def body(self) -> dict:
        return {"id": self.id, "location": self.location, "name": self.name, "type": CLUSTER_TYPE,
                "eTag": self.etag, "tags": dict(self.tags), "sku": {"name": "Base", "tier": "Free"},
                "identity": {"type": "SystemAssigned", "principalId": _guid(self.id, "principal"),
                             "tenantId": self.tenant_id},
                "properties": self._properties()}

    def _properties(self) -> dict:
        return {"provisioningState": self.provisioning_state, "powerState": {"code": "Running"},
                "kubernetesVersion": KUBERNETES_VERSION, "currentKubernetesVersion": KUBERNETES_VERSION,
                "dnsPrefix": self.dns_prefix, "fqdn": self.fqdn,
                "azurePortalFQDN": self.fqdn.replace(".hcp.", ".portal.hcp."),
                "agentPoolProfiles": [{"name": p.name, **p.profile()} for p in self.pools.values()],
                "nodeResourceGroup": self.node_resource_group, "enableRBAC": True, "supportPlan": "KubernetesOfficial",
                "disableLocalAccounts": False, "maxAgentPools": 100,
                "networkProfile": {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16",
                                   "podCidrs": ["10.244.0.0/16"],
                                   "serviceCidr": "10.0.0.0/16", "serviceCidrs": ["10.0.0.0/16"],
                                   "dnsServiceIP": "10.0.0.10", "outboundType": "loadBalancer",
                                   "loadBalancerSku": "standard", "ipFamilies": ["IPv4"]},
                "servicePrincipalProfile": {"clientId": "msi"},
                "oidcIssuerProfile": {"enabled": False}, **self._aad_profile()}

    def _aad_profile(self) -> dict:
        """As ManagedClustersGet.json writes an AKS-managed AAD cluster's profile."""
        if not self.aad:
            return {}
        return {"aadProfile": {"managed": True, "enableAzureRBAC": True, "adminGroupObjectIDs": [],
                               "tenantID": self.tenant_id}}


def _guid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.md5("/".join(parts).encode()).hexdigest()))


def pool_digits(cluster_id: str, pool: str) -> str:
    """The 8 digits AKS puts in a pool's VMSS name, stable for a cluster and pool."""
    return str(int(hashlib.sha256(f"{cluster_id.lower()}/{pool}".encode()).hexdigest(), 16))[-8:].rjust(8, "1")
