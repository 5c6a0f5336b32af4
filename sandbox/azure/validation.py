"""What the AKS resource provider checks before it accepts an agent pool PUT (synchronous 400s), and the
defaults it fills in. A PUT replaces the whole pool: whatever the body leaves out reverts to its default."""
from __future__ import annotations

import re
from typing import Any

from . import errors
from .resources import KUBERNETES_VERSION, AgentPool, ManagedCluster

POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
TAINT = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*=[-A-Za-z0-9_.]*:(NoSchedule|PreferNoSchedule|NoExecute)$")
READ_ONLY = frozenset({"provisioningState", "eTag", "currentOrchestratorVersion", "nodeImageVersion", "powerState"})
IMMUTABLE = ("vmSize", "osType", "availabilityZones", "osDiskSizeGB", "maxPods", "type")
MAX_COUNT = 1000
DEFAULTS: dict[str, Any] = {
    "vmSize": "Standard_DS2_v2", "osDiskSizeGB": 128, "osDiskType": "Managed", "kubeletDiskType": "OS",
    "maxPods": 110, "type": "VirtualMachineScaleSets", "osType": "Linux", "osSKU": "Ubuntu", "mode": "User",
    "enableAutoScaling": False, "scaleDownMode": "Delete", "enableNodePublicIP": False, "enableFIPS": False,
    "upgradeSettings": {"maxSurge": "10%"},
}


def pool_properties(name: str, body: Any, cluster: ManagedCluster, existing: AgentPool | None) -> dict:
    """The properties to store for a PUT of pool `name`, or ArmError 400 for the first thing AKS would refuse."""
    if not POOL_NAME.match(name):
        raise errors.invalid_parameter("agentPoolProfile.name")
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise errors.bad_json("the body must be an agent pool object with 'properties'")
    props = {k: v for k, v in body["properties"].items() if k not in READ_ONLY}
    for key, value in DEFAULTS.items():
        if props.get(key) is None:
            props[key] = value if not isinstance(value, dict) else dict(value)
    props["orchestratorVersion"] = _version(props.get("orchestratorVersion"))
    if props["mode"] not in ("System", "User"):
        raise errors.invalid_parameter("agentPoolProfile.mode")
    _check_count(props)
    _check_autoscaling(props)
    _check_labels_and_taints(props)
    _check_zones(props)
    if existing is not None:
        _check_unchanged(props, existing)
        _check_system_pool_kept(cluster, existing, props)
    return props


def _version(requested: Any) -> str:
    if requested in (None, ""):
        return KUBERNETES_VERSION
    if requested in (KUBERNETES_VERSION, KUBERNETES_VERSION.rsplit(".", 1)[0]):
        return str(requested)
    raise errors.ArmError(400, "AgentPoolK8sVersionNotSupported",
                          f"Version {requested} is not supported in this region. The sandbox runs Kubernetes "
                          f"{KUBERNETES_VERSION} only: upgrades of the orchestrator are not simulated.",
                          target="agentPoolProfile.orchestratorVersion")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_count(props: dict) -> None:
    """`count` is required, even with the autoscaler on; a System pool keeps at least one node."""
    count = props.get("count")
    if count is None:
        raise errors.invalid_parameter("agentPoolProfile.count", "Required parameter agentPoolProfile.count is "
                                       "missing (null): a PUT replaces the whole pool, so it must give the count.")
    if not _is_count(count):
        raise errors.invalid_parameter("agentPoolProfile.count")
    low = 1 if props["mode"] == "System" else 0
    if not low <= count <= MAX_COUNT:
        detail = (f"agentPoolProfile.count was {count}. It must be greater or equal to minCount:{low} and less than "
                  f"or equal to maxCount:{MAX_COUNT}.")
        if count == 0:
            detail += (" If allowedMinCount was expected to be 0 but is 1: 1) The nodepool is a VMAS pool. 2) api "
                       "Version is less than 2020-03-01. 3) The node is a system pool.")
        raise errors.invalid_parameter("agentPoolProfile.count", detail)


def _check_autoscaling(props: dict) -> None:
    """minCount/maxCount go with enableAutoScaling, and the count must lie within them."""
    low, high = props.get("minCount"), props.get("maxCount")
    if props["enableAutoScaling"] is not True:
        if props["enableAutoScaling"] is not False:
            raise errors.invalid_parameter("agentPoolProfile.enableAutoScaling")
        if low is not None or high is not None:
            raise errors.invalid_parameter("agentPoolProfile.minCount", "minCount and maxCount must be null when "
                                           "enableAutoScaling is false.")
        props.pop("minCount", None)
        props.pop("maxCount", None)
        return
    floor = 1 if props["mode"] == "System" else 0
    for field_name, value in (("minCount", low), ("maxCount", high)):
        if not _is_count(value) or not floor <= value <= MAX_COUNT:
            raise errors.invalid_parameter(f"agentPoolProfile.{field_name}")
    if low > high:
        raise errors.invalid_parameter("agentPoolProfile.minCount", f"The value of parameter "
                                       f"agentPoolProfile.minCount ({low}) must be less than or equal to "
                                       f"agentPoolProfile.maxCount ({high}).")
    if not low <= props["count"] <= high:
        raise errors.invalid_parameter("agentPoolProfile.count", f"agentPoolProfile.count was {props['count']}. It "
                                       f"must be greater or equal to minCount:{low} and less than or equal to "
                                       f"maxCount:{high}.")


def _check_labels_and_taints(props: dict) -> None:
    labels = props.get("nodeLabels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise errors.invalid_parameter("agentPoolProfile.nodeLabels")
    reserved = sorted(k for k in labels if k.startswith("kubernetes.azure.com/"))
    if reserved:
        raise errors.invalid_parameter("agentPoolProfile.nodeLabels", f"Node labels with the prefix "
                                       f"'kubernetes.azure.com/' are reserved for AKS: {', '.join(reserved)}.")
    taints = props.get("nodeTaints") or []
    if not isinstance(taints, list) or not all(isinstance(t, str) and TAINT.match(t) for t in taints):
        raise errors.invalid_parameter("agentPoolProfile.nodeTaints", "Each node taint must look like "
                                       "'key=value:NoSchedule|PreferNoSchedule|NoExecute'.")


def _check_zones(props: dict) -> None:
    zones = props.get("availabilityZones")
    if zones is None:
        return
    if not isinstance(zones, list) or not zones or not set(zones) <= {"1", "2", "3"} or len(set(zones)) != len(zones):
        raise errors.invalid_parameter("agentPoolProfile.availabilityZones")


def _check_unchanged(props: dict, existing: AgentPool) -> None:
    for key in IMMUTABLE:
        if props.get(key) != existing.properties.get(key):
            raise errors.property_change_not_allowed(key)


def _check_system_pool_kept(cluster: ManagedCluster, existing: AgentPool, props: dict) -> None:
    if existing.mode == "System" and props["mode"] != "System" and not any(
            p.mode == "System" for p in cluster.pools.values() if p.name != existing.name):
        raise must_keep_system_pool()


def must_keep_system_pool() -> errors.ArmError:
    return errors.ArmError(400, "MustDefineAtLeastOneSystemPool",
                           "There has to be at least one system agent pool.")
