"""Server-side printing: the `meta.k8s.io/v1 Table` kubectl asks for, with the columns a real server prints."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .resources import ResourceType

Column = tuple[str, str, int, Callable[[dict], Any]]   # name, type, priority (1: -o wide only), cell


def wants_table(accept: str) -> bool:
    return "as=Table" in (accept or "")


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def human_age(stamp: str | None) -> str:
    """kubectl's `HumanDuration` of the time since `stamp`."""
    if not stamp:
        return "<unknown>"
    return human_duration(int((dt.datetime.now(dt.timezone.utc) - _parse(stamp)).total_seconds()))


def human_duration(seconds: int) -> str:
    """apimachinery's duration.HumanDuration."""
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _age(obj: dict) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    return (spec.get("template", {}).get("spec", {}) if "template" in spec else spec).get("containers", [])


def _selector(obj: dict) -> str:
    from .selectors import label_selector_from_object
    return str(label_selector_from_object((obj.get("spec") or {}).get("selector")))


def _pod_status(pod: dict) -> tuple[str, int]:
    """printPod's STATUS and its count of ready, running containers."""
    status = _status(pod)
    reason = status.get("reason") or status.get("phase", "Pending")
    ready = running = 0
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, ended = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif ended is not None:
            reason = ended.get("reason") or (f"Signal:{ended['signal']}" if ended.get("signal")
                                             else f"ExitCode:{ended.get('exitCode', 0)}")
        elif cs.get("ready") and "running" in state:
            running, ready = running + 1, ready + 1
    if reason == "Completed" and running:
        reason = "Running" if _condition(pod, "Ready") == "True" else "NotReady"
    if pod["metadata"].get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready


def _pod_ready(pod: dict) -> str:
    return f"{_pod_status(pod)[1]}/{len(pod['spec'].get('containers', []))}"


def _node_status(node: dict) -> str:
    ready = next((c for c in _status(node).get("conditions", []) if c["type"] == "Ready"), None)
    text = "Ready" if ready and ready["status"] == "True" else ("NotReady" if ready else "Unknown")
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _ports(svc: dict) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort") else
                    f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _external_ip(svc: dict) -> str:
    spec = svc.get("spec") or {}
    kind, external = spec.get("type", "ClusterIP"), spec.get("externalIPs") or []
    if kind == "ExternalName":
        return spec.get("externalName", "")
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (_status(svc).get("loadBalancer") or {}).get("ingress") or []]
        return ",".join([i for i in ingress if i] + external) or "<pending>"
    return ",".join(external) or "<none>"


def _labels(labels: dict | None) -> str:
    """labels.FormatLabels: k=v pairs sorted by key, or <none>."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _job_status(job: dict) -> str:
    for kind, text in (("Complete", "Complete"), ("Failed", "Failed")):
        if _condition(job, kind) == "True":
            return text
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget"):
        if _condition(job, kind) == "True":
            return kind
    return "Running"


def _job_completions(job: dict) -> str:
    spec, succeeded = job.get("spec") or {}, _status(job).get("succeeded", 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = spec.get("parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: dict) -> str:
    started, finished = _status(job).get("startTime"), _status(job).get("completionTime")
    if not started:
        return ""
    end = _parse(finished) if finished else dt.datetime.now(dt.timezone.utc)
    return human_duration(int((end - _parse(started)).total_seconds()))


def _subjects(binding: dict, kind: str) -> str:
    """printers.SubjectsStrings: user and group names, service accounts as namespace/name."""
    return ", ".join(f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else s.get("name", "")
                     for s in binding.get("subjects") or [] if s.get("kind") == kind)


def _ingress_hosts(ing: dict) -> str:
    hosts = [r["host"] for r in ing["spec"].get("rules") or [] if r.get("host")]
    return ",".join(hosts) if hosts else "*"


def _ingress_address(ing: dict) -> str:
    lbs = (_status(ing).get("loadBalancer") or {}).get("ingress") or []
    return ",".join(lb.get("ip") or lb.get("hostname") or "" for lb in lbs)


def _condition(obj: dict, kind: str) -> str:
    cond = next((c for c in _status(obj).get("conditions", []) if c["type"] == kind), None)
    return cond["status"] if cond else ""


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, _age)
CREATED_AT: Column = ("Created At", "date", 0, lambda o: o["metadata"].get("creationTimestamp"))  # default convertor
WORKLOAD_WIDE: list[Column] = [("Containers", "string", 1, lambda o: ",".join(c["name"] for c in _containers(o))),
                               ("Images", "string", 1, lambda o: ",".join(c["image"] for c in _containers(o))),
                               ("Selector", "string", 1, _selector)]
BINDING: list[Column] = [NAME, ("Role", "string", 0, lambda o: f"{o['roleRef'].get('kind')}/{o['roleRef'].get('name')}"),
                         AGE, ("Users", "string", 1, lambda o: _subjects(o, "User")),
                         ("Groups", "string", 1, lambda o: _subjects(o, "Group")),
                         ("ServiceAccounts", "string", 1, lambda o: _subjects(o, "ServiceAccount"))]
COLUMNS: dict[str, list[Column]] = {
    "Deployment": [NAME,
                   ("Ready", "string", 0, lambda o: f"{_status(o).get('readyReplicas', 0)}/{o['spec'].get('replicas', 0)}"),
                   ("Up-to-date", "integer", 0, lambda o: _status(o).get("updatedReplicas", 0)),
                   ("Available", "integer", 0, lambda o: _status(o).get("availableReplicas", 0)), AGE,
                   ("Containers", "string", 1, lambda o: ",".join(c["name"] for c in _containers(o))),
                   ("Images", "string", 1, lambda o: ",".join(c["image"] for c in _containers(o))),
                   ("Selector", "string", 1, _selector)],
    "ReplicaSet": [NAME, ("Desired", "integer", 0, lambda o: o["spec"].get("replicas", 0)),
                   ("Current", "integer", 0, lambda o: _status(o).get("replicas", 0)),
                   ("Ready", "integer", 0, lambda o: _status(o).get("readyReplicas", 0)), AGE,
                   ("Containers", "string", 1, lambda o: ",".join(c["name"] for c in _containers(o))),
                   ("Images", "string", 1, lambda o: ",".join(c["image"] for c in _containers(o))),
                   ("Selector", "string", 1, _selector)],
    "Pod": [NAME, ("Ready", "string", 0, _pod_ready), ("Status", "string", 0, lambda o: _pod_status(o)[0]),
            ("Restarts", "string", 0, lambda o: str(sum(c.get("restartCount", 0)
                                                        for c in _status(o).get("containerStatuses", [])))),
            AGE, ("IP", "string", 1, lambda o: _status(o).get("podIP", "<none>")),
            ("Node", "string", 1, lambda o: o["spec"].get("nodeName", "<none>")),
            ("Nominated Node", "string", 1, lambda o: "<none>"), ("Readiness Gates", "string", 1, lambda o: "<none>")],
    "Node": [NAME, ("Status", "string", 0, _node_status), ("Roles", "string", 0, lambda o: "<none>"), AGE,
             ("Version", "string", 0, lambda o: _status(o).get("nodeInfo", {}).get("kubeletVersion", "")),
             ("Internal-IP", "string", 1, lambda o: next((a["address"] for a in _status(o).get("addresses", [])
                                                         if a["type"] == "InternalIP"), "<none>")),
             ("OS-Image", "string", 1, lambda o: _status(o).get("nodeInfo", {}).get("osImage", "")),
             ("Container-Runtime", "string", 1,
              lambda o: _status(o).get("nodeInfo", {}).get("containerRuntimeVersion", ""))],
    "Namespace": [NAME, ("Status", "string", 0, lambda o: _status(o).get("phase", "Active")), AGE],
    "Service": [NAME, ("Type", "string", 0, lambda o: o["spec"].get("type", "ClusterIP")),
                ("Cluster-IP", "string", 0, lambda o: next(iter(o["spec"].get("clusterIPs") or ()), "<none>")),
                ("External-IP", "string", 0, _external_ip), ("Port(s)", "string", 0, _ports), AGE,
                ("Selector", "string", 1, lambda o: ",".join(f"{k}={v}" for k, v in
                                                             (o["spec"].get("selector") or {}).items()) or "<none>")],
    "Secret": [NAME, ("Type", "string", 0, lambda o: o.get("type", "Opaque")),
               ("Data", "integer", 0, lambda o: len(o.get("data") or {})), AGE],
    "ConfigMap": [NAME, ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
                  AGE],
    "Event": [("Last Seen", "string", 0, lambda o: human_age(o.get("lastTimestamp"))),
              ("Type", "string", 0, lambda o: o.get("type", "")), ("Reason", "string", 0, lambda o: o.get("reason", "")),
              ("Object", "string", 0, lambda o: f"{o['involvedObject'].get('kind', '').lower()}/"
                                                f"{o['involvedObject'].get('name', '')}"),
              ("Message", "string", 0, lambda o: o.get("message", ""))],
    "PodDisruptionBudget": [NAME, ("Min Available", "string", 0, lambda o: str(o["spec"].get("minAvailable", "N/A"))),
                            ("Max Unavailable", "string", 0,
                             lambda o: str(o["spec"].get("maxUnavailable", "N/A"))),
                            ("Allowed Disruptions", "integer", 0, lambda o: _status(o).get("disruptionsAllowed", 0)),
                            AGE],
    "HorizontalPodAutoscaler": [NAME, ("Reference", "string", 0,
                                       lambda o: f"{o['spec']['scaleTargetRef'].get('kind')}/"
                                                 f"{o['spec']['scaleTargetRef'].get('name')}"),
                                ("Targets", "string", 0, lambda o: "<unknown>"),
                                ("MinPods", "integer", 0, lambda o: o["spec"].get("minReplicas", 1)),
                                ("MaxPods", "integer", 0, lambda o: o["spec"].get("maxReplicas", 0)),
                                ("Replicas", "integer", 0, lambda o: _status(o).get("currentReplicas", 0)), AGE],
    "DaemonSet": [NAME, ("Desired", "integer", 0, lambda o: _status(o).get("desiredNumberScheduled", 0)),
                  ("Current", "integer", 0, lambda o: _status(o).get("currentNumberScheduled", 0)),
                  ("Ready", "integer", 0, lambda o: _status(o).get("numberReady", 0)),
                  ("Up-to-date", "integer", 0, lambda o: _status(o).get("updatedNumberScheduled", 0)),
                  ("Available", "integer", 0, lambda o: _status(o).get("numberAvailable", 0)),
                  ("Node Selector", "string", 0, lambda o: _labels(o["spec"]["template"]["spec"].get("nodeSelector"))),
                  AGE] + WORKLOAD_WIDE,
    "Job": [NAME, ("Status", "string", 0, _job_status), ("Completions", "string", 0, _job_completions),
            ("Duration", "string", 0, _job_duration), AGE] + WORKLOAD_WIDE,
    "ServiceAccount": [NAME, ("Secrets", "string", 0, lambda o: len(o.get("secrets") or [])), AGE],
    "Role": [NAME, CREATED_AT], "ClusterRole": [NAME, CREATED_AT],
    "RoleBinding": BINDING, "ClusterRoleBinding": BINDING,
    "Ingress": [NAME, ("Class", "string", 0, lambda o: o["spec"].get("ingressClassName") or "<none>"),
                ("Hosts", "string", 0, _ingress_hosts), ("Address", "string", 0, _ingress_address),
                ("Ports", "string", 0, lambda o: "80, 443" if o["spec"].get("tls") else "80"), AGE],
    "Certificate": [NAME, ("Ready", "string", 0, lambda o: _condition(o, "Ready")),
                    ("Secret", "string", 0, lambda o: o["spec"].get("secretName", "")), AGE],
}


def table(resource: ResourceType, objs: list[dict], list_meta: dict | None = None) -> dict:
    """Rows for `objs` with the kind's columns; row objects are PartialObjectMetadata, as by default."""
    columns = COLUMNS.get(resource.kind, [NAME, AGE])
    definitions = [{"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": "",
                    "priority": priority} for name, kind, priority, _ in columns]
    rows = [{"cells": [cell(obj) for _, _, _, cell in columns],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"]}} for obj in objs]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {},
            "columnDefinitions": definitions, "rows": rows}
