"""Strategic-merge-patch metadata for the built-in kinds the sandbox serves.

A compact copy of the `patchStrategy` / `patchMergeKey` struct tags of k8s.io/api, which
`k8s.io/apimachinery/pkg/util/strategicpatch` reads. `TYPES` maps a type name to its fields that
matter for patching: field -> (strategy, merge key, element/child type). Fields not listed have no
strategy: maps merge key by key, lists are replaced whole. `KIND_ROOTS` maps a kind to its root type.
"""
from __future__ import annotations

FieldMeta = tuple[str | None, str | None, str | None]

MERGE = "merge"
RETAIN_KEYS = "retainKeys"
MERGE_RETAIN = "merge,retainKeys"

_META: FieldMeta = (None, None, "ObjectMeta")


def _object(spec: str | None = None, status: str | None = None) -> dict[str, FieldMeta]:
    fields: dict[str, FieldMeta] = {"metadata": _META}
    if spec:
        fields["spec"] = (None, None, spec)
    if status:
        fields["status"] = (None, None, status)
    return fields


def _conditions() -> dict[str, FieldMeta]:
    return {"conditions": (MERGE, "type", None)}


TYPES: dict[str, dict[str, FieldMeta]] = {
    "ObjectMeta": {
        "finalizers": (MERGE, None, None),
        "ownerReferences": (MERGE, "uid", None),
        # labels / annotations are plain maps; managedFields has no strategy (replaced).
    },
    "PodTemplateSpec": {"metadata": _META, "spec": (None, None, "PodSpec")},
    "PodSpec": {
        "containers": (MERGE, "name", "Container"),
        "initContainers": (MERGE, "name", "Container"),
        "ephemeralContainers": (MERGE, "name", "Container"),
        "volumes": (MERGE_RETAIN, "name", None),
        "imagePullSecrets": (MERGE, "name", None),
        "hostAliases": (MERGE, "ip", None),
        "topologySpreadConstraints": (MERGE, "topologyKey", None),
        "schedulingGates": (MERGE, "name", None),
        "resourceClaims": (MERGE_RETAIN, "name", None),
        # tolerations, readinessGates, affinity terms: no strategy -> replaced whole.
    },
    "Container": {
        "env": (MERGE, "name", None),
        "ports": (MERGE, "containerPort", None),
        "volumeMounts": (MERGE, "mountPath", None),
        "volumeDevices": (MERGE, "devicePath", None),
        # args, command, envFrom, resizePolicy: no strategy -> replaced whole.
    },
    "PodStatus": {
        **_conditions(),
        "podIPs": (MERGE, "ip", None),
        "hostIPs": (MERGE, "ip", None),
        "resourceClaimStatuses": (MERGE_RETAIN, "name", None),
        # containerStatuses & co: no strategy -> replaced whole.
    },
    "NodeSpec": {"podCIDRs": (MERGE, None, None)},  # taints: replaced whole
    "NodeStatus": {**_conditions(), "addresses": (MERGE, "type", None)},
    "ServiceSpec": {"ports": (MERGE, "port", None)},
    "DeploymentSpec": {
        "template": (None, None, "PodTemplateSpec"),
        "strategy": (RETAIN_KEYS, None, None),
    },
    "ReplicaSetSpec": {"template": (None, None, "PodTemplateSpec")},
    "DaemonSetSpec": {"template": (None, None, "PodTemplateSpec")},
    "JobSpec": {"template": (None, None, "PodTemplateSpec")},
    "ConditionsStatus": _conditions(),
    # Roots, named after their kinds.
    "Namespace": _object(None, "ConditionsStatus"),
    "Node": _object("NodeSpec", "NodeStatus"),
    "Pod": _object("PodSpec", "PodStatus"),
    "Service": _object("ServiceSpec", "ConditionsStatus"),
    "Secret": _object(),
    "ConfigMap": _object(),
    "Event": _object(),
    "Deployment": _object("DeploymentSpec", "ConditionsStatus"),
    "ReplicaSet": _object("ReplicaSetSpec", "ConditionsStatus"),
    "PodDisruptionBudget": _object(None, "ConditionsStatus"),
    "HorizontalPodAutoscaler": _object(None, "ConditionsStatus"),
    "Scale": _object(),
    "DaemonSet": _object("DaemonSetSpec", "ConditionsStatus"),
    "Job": _object("JobSpec", "ConditionsStatus"),
    "ServiceAccount": {"metadata": _META, "secrets": (MERGE, "name", None)},
    "Role": _object(), "ClusterRole": _object(), "RoleBinding": _object(), "ClusterRoleBinding": _object(),
}

KIND_ROOTS: dict[str, str] = {kind: kind for kind in (
    "Namespace", "Node", "Pod", "Service", "Secret", "ConfigMap", "Event", "Deployment", "ReplicaSet",
    "PodDisruptionBudget", "HorizontalPodAutoscaler", "Scale", "DaemonSet", "Job", "ServiceAccount",
    "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
)}


def lookup(type_name: str | None, field: str) -> FieldMeta:
    """(strategy, merge key, child type) of `field` in `type_name`; (None, None, None) when unknown."""
    if type_name is None:
        return (None, None, None)
    return TYPES.get(type_name, {}).get(field, (None, None, None))
