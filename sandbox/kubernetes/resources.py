"""The resource types the sandbox serves, and what discovery says about them."""
from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str                 # e.g. "scale"
    kind: str                 # e.g. "Scale"
    group: str = ""           # set when the subresource's kind lives in another group (Scale, Eviction)
    version: str = ""
    verbs: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    has_status: bool = True   # whether a `status` subresource separates spec from status writes
    list_kind: str = field(default="")
    generation: bool = False  # whether the registry tracks metadata.generation (set on create, bumped by spec)
    initial_status: dict | None = None   # the status a create answers with (PrepareForCreate); None: none

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)


_STATUS = Subresource("status", "")  # kind filled per resource in discovery
_SCALE = Subresource("scale", "Scale", "autoscaling", "v1")

_ALL = ("all",)
_NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")
RBAC = "rbac.authorization.k8s.io"

# In discovery order: core, then the groups in the order the real server lists them, custom resources last.
RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",),
                 subresources=(_STATUS,), verbs=_NO_COLLECTION_DELETE),
    ResourceType("", "v1", "nodes", "Node", False, "node", ("no",), subresources=(_STATUS,)),
    ResourceType("", "v1", "pods", "Pod", True, "pod", ("po",), _ALL,
                 subresources=(_STATUS, Subresource("log", "Pod", verbs=("get",)),
                               Subresource("eviction", "Eviction", "policy", "v1", verbs=("create",)))),
    ResourceType("", "v1", "services", "Service", True, "service", ("svc",), _ALL, subresources=(_STATUS,),
                 initial_status={"loadBalancer": {}}),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",), has_status=False),
    ResourceType("", "v1", "secrets", "Secret", True, "secret", has_status=False),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",), has_status=False),
    ResourceType("", "v1", "events", "Event", True, "event", ("ev",), has_status=False),
    ResourceType("apps", "v1", "deployments", "Deployment", True, "deployment", ("deploy",), _ALL,
                 subresources=(_STATUS, _SCALE), generation=True, initial_status={}),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, "replicaset", ("rs",), _ALL,
                 subresources=(_STATUS, _SCALE), generation=True, initial_status={"replicas": 0}),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, "daemonset", ("ds",), _ALL,
                 subresources=(_STATUS,), generation=True,
                 initial_status={"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                                 "numberReady": 0}),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
                 "horizontalpodautoscaler", ("hpa",), _ALL, subresources=(_STATUS,), generation=True,
                 initial_status={"desiredReplicas": 0}),
    ResourceType("batch", "v1", "jobs", "Job", True, "job", (), _ALL, subresources=(_STATUS,), generation=True,
                 initial_status={}),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, "ingress", ("ing",),
                 subresources=(_STATUS,), generation=True, initial_status={"loadBalancer": {}}),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, "poddisruptionbudget",
                 ("pdb",), subresources=(_STATUS,), generation=True,
                 initial_status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
    ResourceType(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False, "clusterrolebinding",
                 has_status=False),
    ResourceType(RBAC, "v1", "clusterroles", "ClusterRole", False, "clusterrole", has_status=False),
    ResourceType(RBAC, "v1", "rolebindings", "RoleBinding", True, "rolebinding", has_status=False),
    ResourceType(RBAC, "v1", "roles", "Role", True, "role", has_status=False),
    ResourceType("cert-manager.io", "v1", "certificates", "Certificate", True, "certificate",
                 ("cert", "certs"), ("cert-manager",), subresources=(_STATUS,), generation=True),
)

BY_KEY: dict[tuple[str, str], ResourceType] = {r.key: r for r in RESOURCES}
BY_KIND: dict[str, ResourceType] = {r.kind: r for r in RESOURCES}

# Group versions served, in discovery order. autoscaling/v1 is served only for the Scale subresource's kind.
GROUP_VERSIONS: dict[str, tuple[str, ...]] = {}
for _r in RESOURCES:
    GROUP_VERSIONS.setdefault(_r.group, ())
    if _r.version not in GROUP_VERSIONS[_r.group]:
        GROUP_VERSIONS[_r.group] += (_r.version,)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    resource = BY_KEY.get((group, plural))
    if resource is None or resource.version != version:
        return None
    return resource


def resources_in(group: str, version: str) -> list[ResourceType]:
    return [r for r in RESOURCES if r.group == group and r.version == version]
