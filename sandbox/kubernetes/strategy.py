"""What each registry does to an object between admission and storage (the real strategies'
PrepareForCreate / PrepareForUpdate and the Service REST layer): the status a create starts from, ClusterIP
and NodePort allocation, and the selector a Job generates from its own uid."""
from __future__ import annotations

import copy
import ipaddress
import json
import random
import uuid

from . import errors
from .resources import BY_KIND, ResourceType
from .store import Store

KEEP_STATUS_ON_CREATE = frozenset({"Pod", "Namespace", "Node"})   # created with the status they are sent
SERVICE_CIDR = ipaddress.ip_network("10.0.0.0/16")                 # AKS's default service CIDR
KUBERNETES_SERVICE_IP = "10.0.0.1"                                 # the `kubernetes` Service's, never handed out
NODE_PORTS = range(30000, 32768)
JOB_UID_LABEL, JOB_NAME_LABEL = "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"
_random = random.Random()


def prepare_for_create(store: Store, resource: ResourceType, obj: dict) -> None:
    if resource.has_status and resource.kind not in KEEP_STATUS_ON_CREATE:
        if resource.initial_status is None:
            obj.pop("status", None)
        else:
            obj["status"] = copy.deepcopy(resource.initial_status)
    if resource.kind == "Service":
        allocate_service(store, obj)
    elif resource.kind == "Job":
        generate_job_selector(obj)


def prepare_for_update(store: Store, resource: ResourceType, obj: dict, old: dict) -> None:
    if resource.kind == "Service":
        keep_service_allocations(store, obj, old)


# -- Services --------------------------------------------------------------------------------------

def _used_cluster_ips(store: Store, skip: dict | None = None) -> set[str]:
    used = {KUBERNETES_SERVICE_IP}
    for svc in store.items(BY_KIND["Service"]):
        if svc is not skip:
            used.update((svc.get("spec") or {}).get("clusterIPs") or ())
    return used


def allocate_service(store: Store, obj: dict) -> None:
    """ClusterIP (random in 10.0.0.0/16, unique, never .0 or .1), IP family fields, NodePorts."""
    spec = obj.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return
    requested = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or ()), "")
    if requested != "None":
        requested = _claim_ip(requested, _used_cluster_ips(store), obj)
    spec["clusterIP"], spec["clusterIPs"] = requested, [requested]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    _allocate_node_ports(store, obj, {})


def _claim_ip(requested: str, used: set[str], obj: dict) -> str:
    if not requested:
        size = SERVICE_CIDR.num_addresses
        while True:
            candidate = str(SERVICE_CIDR[_random.randrange(2, size - 1)])
            if candidate not in used:
                return candidate
    try:
        address = ipaddress.ip_address(requested)
    except ValueError:
        address = None
    if address is None or address not in SERVICE_CIDR or address in (SERVICE_CIDR[0], SERVICE_CIDR[-1]):
        why = (f"failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. "
               f"The range of valid IPs is {SERVICE_CIDR}")
    elif requested in used:
        why = f"failed to allocate IP {requested}: provided IP is already allocated"
    else:
        return requested
    raise errors.invalid("Service", obj["metadata"].get("name", ""), [
        ("spec.clusterIPs", f'Invalid value: []string{{"{requested}"}}: {why}')])


def _allocate_node_ports(store: Store, obj: dict, previous: dict[int, int]) -> None:
    spec = obj["spec"]
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return
    if spec.get("type") == "LoadBalancer" and not spec.setdefault("allocateLoadBalancerNodePorts", True):
        return
    used = {p.get("nodePort") for svc in store.items(BY_KIND["Service"]) if svc["metadata"]["uid"] !=
            obj["metadata"].get("uid") for p in (svc.get("spec") or {}).get("ports") or ()}
    for port in spec.get("ports") or []:
        if not port.get("nodePort"):
            port["nodePort"] = previous.get(port.get("port")) or next(
                p for p in _random.sample(NODE_PORTS, len(NODE_PORTS)) if p not in used)
        used.add(port["nodePort"])


def keep_service_allocations(store: Store, obj: dict, old: dict) -> None:
    """An update that leaves out what was allocated keeps it (the real `patchAllocatedValues`)."""
    spec, was = obj.setdefault("spec", {}), old.get("spec") or {}
    if spec.get("type") == "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(key, None)
        return
    if not spec.get("clusterIP") and not spec.get("clusterIPs") and was.get("clusterIPs"):
        spec["clusterIP"], spec["clusterIPs"] = was["clusterIP"], list(was["clusterIPs"])
    elif spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif not spec.get("clusterIP") and spec.get("clusterIPs"):
        spec["clusterIP"] = spec["clusterIPs"][0]
    elif not spec.get("clusterIP"):                              # was ExternalName: allocate now
        allocate_service(store, obj)
    for key in ("ipFamilies", "ipFamilyPolicy"):
        if key in was:
            spec.setdefault(key, copy.deepcopy(was[key]))
    previous = {p.get("port"): p.get("nodePort") for p in was.get("ports") or () if p.get("nodePort")}
    _allocate_node_ports(store, obj, previous)


# -- Jobs ------------------------------------------------------------------------------------------

def generate_job_selector(obj: dict) -> None:
    """Jobs select their pods by the Job's uid, given before it is stored (batch/v1 generateSelector)."""
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    if spec.get("selector"):
        raise errors.invalid("Job", meta.get("name", ""), [
            ("spec.selector", f"Invalid value: {json.dumps(spec['selector'])}: `selector` not auto-generated")],
            "batch")
    uid = meta["uid"] = str(uuid.uuid4())
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.get("labels") or {}
    for key, value in ((JOB_UID_LABEL, uid), (JOB_NAME_LABEL, meta.get("name", "")),
                       ("controller-uid", uid), ("job-name", meta.get("name", ""))):
        labels.setdefault(key, value)
    template_meta["labels"] = labels
    spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
    if not meta.get("labels"):             # SetDefaults_Job again as the Job is read back from storage
        meta["labels"] = dict(labels)
