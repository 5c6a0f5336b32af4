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
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _Target(BaseModel):
    """Base of every target: subclasses name their kind, the field holding the object's name, and how
    people call it (`_label`, formatted with the target's fields)."""
    model_config = ConfigDict(frozen=True)
    _object_kind: ClassVar[str]
    _name_field: ClassVar[str]
    _label: ClassVar[str]
    environment: str = Field(description="catalog environment the run was asked for (for display)")
    cluster: str = Field(description="identity of the system holding the object: API server URL, AKS id, host")
    namespace: str | None = None

    @property
    def object_kind(self) -> str:
        return self._object_kind

    @property
    def object_name(self) -> str:
        return getattr(self, self._name_field)

    @property
    def key(self) -> str:
        """cluster/namespace/kind/name: one lock and one cooldown per object, whatever the catalog calls it."""
        return "/".join([self.cluster, self.namespace or "-", self.object_kind, self.object_name])

    @property
    def label(self) -> str:
        """How people name it: `production/payments-api`."""
        return self._label.format(**self.__dict__)

    @property
    def resource(self) -> str:
        """How kubectl names it: `deployment payments/payments-api`."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.object_kind.lower()} {ns}{self.object_name}"


class DeploymentTarget(_Target):
    """A catalog service: one Deployment in one namespace."""
    _object_kind, _name_field, _label = "Deployment", "deployment", "{environment}/{service}"
    kind: Literal["deployment"] = "deployment"
    service: str
    namespace: str
    deployment: str


class HpaTarget(_Target):
    """A catalog service's HorizontalPodAutoscaler (its bounds are what a scaling run changes)."""
    _object_kind, _name_field, _label = "HorizontalPodAutoscaler", "hpa", "{environment}/{service} HPA"
    kind: Literal["hpa"] = "hpa"
    service: str
    namespace: str
    hpa: str


class NodePoolTarget(_Target):
    """An AKS agent pool (`cluster` is the managed cluster's resource id)."""
    _object_kind, _name_field, _label = "AgentPool", "pool", "{environment}/node pool {pool}"
    kind: Literal["node-pool"] = "node-pool"
    pool: str


class NodeTarget(_Target):
    _object_kind, _name_field, _label = "Node", "node", "{environment}/node {node}"
    kind: Literal["node"] = "node"
    node: str


class CertificateTarget(_Target):
    """A TLS certificate: a cert-manager Certificate, or a TLS Secret no Certificate manages."""
    _object_kind, _name_field = "Certificate", "certificate"
    _label = "{environment}/certificate {namespace}/{certificate}"
    kind: Literal["certificate"] = "certificate"
    namespace: str
    certificate: str


class CertificateSetTarget(_Target):
    """The cert-manager Certificates of one environment's namespaces on one cluster, renewed as one approved
    plan. `scope` names those namespaces (not the catalog environment), so the key is what is changed."""
    _object_kind, _name_field, _label = "CertificateSet", "scope", "{environment}/certificates ({scope})"
    kind: Literal["certificate-set"] = "certificate-set"
    scope: str = Field(description="which namespaces: 'every namespace', 'namespaces a, b', ...")


class RepositoryTarget(_Target):
    """A GitHub repository (`cluster` is the GitHub host, e.g. github.com)."""
    _object_kind, _name_field, _label = "Repository", "repository", "{environment}/{repository}"
    kind: Literal["repository"] = "repository"
    repository: str = Field(description="owner/name")


Target = Annotated[Union[DeploymentTarget, HpaTarget, NodePoolTarget, NodeTarget, CertificateTarget, RepositoryTarget,
                         CertificateSetTarget],
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
