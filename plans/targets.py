"""What a runbook changes, typed, with the key its lock and cooldown use.

Why keys name the object and not the catalog entry: two catalog entries (say `staging` and
`production`) can point at the same Deployment. If the lock, the cooldown and the approval policy were
keyed by catalog names, a run through one entry would not see a run through the other. So every key is
built from what is changed: the cluster's identity (its API server URL, or its AKS resource id), the
namespace, the kind and the name.
"""
from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Target(BaseModel):
    model_config = ConfigDict(frozen=True)
    environment: str = Field(description="catalog environment the run was asked for (for display)")
    cluster: str = Field(description="identity of the system holding the object: API server URL, AKS id, host")
    namespace: str | None = None

    @property
    def object_kind(self) -> str:
        raise NotImplementedError

    @property
    def object_name(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """cluster/namespace/kind/name: one lock and one cooldown per object, whatever the catalog calls it."""
        return "/".join([self.cluster, self.namespace or "-", self.object_kind, self.object_name])

    @property
    def label(self) -> str:
        """How people name it: `production/payments-api`."""
        raise NotImplementedError

    @property
    def resource(self) -> str:
        """How kubectl names it: `deployment payments/payments-api`."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.object_kind.lower()} {ns}{self.object_name}"


class DeploymentTarget(_Target):
    """A catalog service: one Deployment in one namespace."""
    kind: Literal["deployment"] = "deployment"
    service: str
    namespace: str
    deployment: str

    @property
    def object_kind(self) -> str:
        return "Deployment"

    @property
    def object_name(self) -> str:
        return self.deployment

    @property
    def label(self) -> str:
        return f"{self.environment}/{self.service}"


class NodePoolTarget(_Target):
    """An AKS agent pool (`cluster` is the managed cluster's resource id)."""
    kind: Literal["node-pool"] = "node-pool"
    pool: str

    @property
    def object_kind(self) -> str:
        return "AgentPool"

    @property
    def object_name(self) -> str:
        return self.pool

    @property
    def label(self) -> str:
        return f"{self.environment}/node pool {self.pool}"


class NodeTarget(_Target):
    kind: Literal["node"] = "node"
    node: str

    @property
    def object_kind(self) -> str:
        return "Node"

    @property
    def object_name(self) -> str:
        return self.node

    @property
    def label(self) -> str:
        return f"{self.environment}/node {self.node}"


class CertificateTarget(_Target):
    """A TLS certificate: a cert-manager Certificate, or a TLS Secret no Certificate manages."""
    kind: Literal["certificate"] = "certificate"
    namespace: str
    certificate: str

    @property
    def object_kind(self) -> str:
        return "Certificate"

    @property
    def object_name(self) -> str:
        return self.certificate

    @property
    def label(self) -> str:
        return f"{self.environment}/certificate {self.namespace}/{self.certificate}"


class RepositoryTarget(_Target):
    """A GitHub repository (`cluster` is the GitHub host, e.g. github.com)."""
    kind: Literal["repository"] = "repository"
    repository: str = Field(description="owner/name")

    @property
    def object_kind(self) -> str:
        return "Repository"

    @property
    def object_name(self) -> str:
        return self.repository

    @property
    def label(self) -> str:
        return f"{self.environment}/{self.repository}"


Target = Annotated[Union[DeploymentTarget, NodePoolTarget, NodeTarget, CertificateTarget, RepositoryTarget],
                   Field(discriminator="kind")]


def _slug(text: str, limit: int) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")[:limit].strip("-")


def key_slug(key: str) -> str:
    """A name-safe form of a target key: readable tail plus a hash of the whole key, so two keys never
    share a name (Prefect limit names ban `/%&><`; artifact keys allow only `[a-z0-9-]`)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    namespace_kind_name = "-".join(key.split("/")[-3:])
    return f"{_slug(namespace_kind_name, 60)}-{digest}"


def lock_name(key: str) -> str:
    """The Prefect global concurrency limit that admits one mutating run per object."""
    return f"runbook-lock-{key_slug(key)}"


def change_record_key(key: str) -> str:
    """The Prefect artifact key under which every change to the object is journaled (newest first)."""
    return f"runbook-change-{key_slug(key)}"


def holder_record_key(key: str) -> str:
    """The Prefect artifact key recording which run holds the object's lock."""
    return f"runbook-lock-holder-{key_slug(key)}"
