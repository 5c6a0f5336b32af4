"""Server-side printing: the `meta.k8s.io/v1 Table` kubectl asks for, with the columns a real server prints."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from .resources import ResourceType

Column = tuple[str, str, int, Callable[[dict], Any]]   # name, type, priority (1: -o wide only), cell


def wants_table(accept: str) -> bool:
    return "as=Table" in (accept or "")


def human_age(stamp: str | None) -> str:
    """kubectl's `HumanDuration` of the time since `stamp`."""
    if not stamp:
        return "<unknown>"
    then = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    seconds = int((dt.datetime.now(dt.timezone.utc) - then).total_seconds())
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


def _pod_status(pod: dict) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = _status(pod)
    for cs in status.get("containerStatuses", []):
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    return status.get("reason") or status.get("phase", "Pending")


def _pod_ready(pod: dict) -> str:
    statuses = _status(pod).get("containerStatuses", [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{len(pod['spec'].get('containers', []))}"


def _node_status(node: dict) -> str:
    ready = next((c for c in _status(node).get("conditions", []) if c["type"] == "Ready"), None)
    text = "Ready" if ready and ready["status"] == "True" else ("NotReady" if ready else "Unknown")
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _ports(svc: dict) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _condition(obj: dict, kind: str) -> str:
    cond = next((c for c in _status(obj).get("conditions", []) if c["type"] == kind), None)
    return cond["status"] if cond else ""


NAME: Column = ("Name", "string", 0, lambda o: o["metadata"]["name"])
AGE: Column = ("Age", "string", 0, _age)
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
    "Pod": [NAME, ("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
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
                ("Cluster-IP", "string", 0, lambda o: o["spec"].get("clusterIP", "<none>")),
                ("External-IP", "string", 0, lambda o: "<none>"), ("Port(s)", "string", 0, _ports), AGE,
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
