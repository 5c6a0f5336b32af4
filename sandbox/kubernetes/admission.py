"""Defaulting and validation, as the real API server applies them before storing an object."""
from __future__ import annotations

import base64
import binascii
import json
import re

from . import errors
from .resources import ResourceType
from .selectors import SelectorError, label_selector_from_object

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def default(resource: ResourceType, obj: dict) -> dict:
    """Fill the defaults the real server fills, so templates compare equal the way controllers expect."""
    kind = resource.kind
    if kind in ("Deployment", "ReplicaSet"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        if kind == "Deployment":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _default_pod_spec(template.setdefault("spec", {}))
    elif kind == "Pod":
        _default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        if "stringData" in obj:  # write-only convenience field, folded into data as the real server does
            data = obj.setdefault("data", {}) or {}
            for key, value in (obj.pop("stringData") or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", obj["metadata"].get("name", ""))
    elif kind == "Certificate":
        obj.setdefault("spec", {})
    return obj


def _default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def validate(resource: ResourceType, obj: dict, old: dict | None = None) -> None:
    """Raise a 422 Invalid naming every bad field; nothing is stored when this raises."""
    causes: list[tuple[str, str]] = []
    meta = obj.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    if not isinstance(meta, dict):
        causes.append(("metadata", "Required value"))
    elif not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        pattern = _DNS1123_LABEL if resource.kind in ("Namespace", "Service") else _DNS1123_SUBDOMAIN
        if len(name) > 253 or not pattern.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of '
                                            "lower case alphanumeric characters, '-' or '.', and must start and "
                                            "end with an alphanumeric character"))
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and (not isinstance(value, dict)
                                      or not all(isinstance(v, str) for v in value.values())):
                causes.append((f"metadata.{field}", "Invalid value: must be a map of string to string"))
    checker = _CHECKS.get(resource.kind)
    if checker is not None and not causes:
        checker(obj, old, causes)
    if causes:
        raise errors.invalid(resource.kind, name, causes, resource.group)


def _check_pod_spec(spec: object, path: str, causes: list[tuple[str, str]]) -> None:
    if not isinstance(spec, dict):
        causes.append((path, "Required value"))
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append((f"{path}.containers", "Required value"))
        return
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(container, dict):
            causes.append((where, "Invalid value: must be an object"))
            continue
        cname = container.get("name")
        if not cname or not isinstance(cname, str):
            causes.append((f"{where}.name", "Required value"))
        elif cname in seen:
            causes.append((f"{where}.name", f'Duplicate value: "{cname}"'))
        else:
            seen.add(cname)
        if not container.get("image") or not isinstance(container.get("image"), str):
            causes.append((f"{where}.image", "Required value"))


def _check_workload(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        causes.append(("spec", "Required value"))
        return
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        causes.append(("spec.selector", "Required value"))
        return
    try:
        parsed = label_selector_from_object(selector)
    except SelectorError as exc:
        causes.append(("spec.selector", f"Invalid value: {exc}"))
        return
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if parsed.empty:
        causes.append(("spec.selector", "Invalid value: empty selector is invalid for deployment"))
    elif not parsed.matches(labels):
        causes.append(("spec.template.metadata.labels",
                       f"Invalid value: {_go_string_map(labels)}: `selector` does not match template `labels`"))
    _check_pod_spec(template.get("spec"), "spec.template.spec", causes)
    if old is not None and old.get("spec", {}).get("selector") != selector:
        causes.append(("spec.selector", f"Invalid value: {selector!r}: field is immutable"))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= spec.get("minReadySeconds", 0)):
        causes.append(("spec.progressDeadlineSeconds",
                       f"Invalid value: {deadline!r}: must be greater than minReadySeconds"))


def _go_string_map(labels: object) -> str:
    """Go's %#v of a map[string]string, as field.Invalid prints it: map[string]string{"app":"web"}."""
    if not isinstance(labels, dict):
        return repr(labels)
    return "map[string]string{" + ", ".join(f"{json.dumps(str(k))}:{json.dumps(str(v))}"
                                             for k, v in sorted(labels.items())) + "}"


def _check_pod(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    _check_pod_spec(obj.get("spec"), "spec", causes)
    if old is not None:
        was, now = old.get("spec", {}), obj.get("spec", {})
        if {k: v for k, v in was.items() if k not in ("containers", "activeDeadlineSeconds", "tolerations")} != \
           {k: v for k, v in now.items() if k not in ("containers", "activeDeadlineSeconds", "tolerations")}:
            if was.get("nodeName") != now.get("nodeName") and not was.get("nodeName"):
                return  # binding a pending pod to a node
            causes.append(("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*]."
                                   "image`, `spec.activeDeadlineSeconds` or `spec.tolerations`"))


def _check_secret(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    for key, value in (obj.get("data") or {}).items():
        if not _SECRET_KEY.match(key):
            causes.append((f"data[{key}]", f'Invalid value: "{key}": a valid config key must consist of '
                                           "alphanumeric characters, '-', '_' or '.'"))
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            causes.append((f"data[{key}]", "Invalid value: illegal base64 data"))
    if old is not None and old.get("type") != obj.get("type"):
        causes.append(("type", f'Invalid value: "{obj.get("type")}": field is immutable'))


def _check_service(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    for i, port in enumerate((obj.get("spec") or {}).get("ports") or []):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append((f"spec.ports[{i}].port", f"Invalid value: {number!r}: must be between 1 and 65535"))


def _check_pdb(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    spec = obj.get("spec") or {}
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(("spec", "Invalid value: minAvailable and maxUnavailable cannot be both set"))


def _check_certificate(obj: dict, old: dict | None, causes: list[tuple[str, str]]) -> None:
    spec = obj.get("spec") or {}
    if not spec.get("secretName"):
        causes.append(("spec.secretName", "Required value"))
    if not (spec.get("issuerRef") or {}).get("name"):
        causes.append(("spec.issuerRef.name", "Required value"))
    if not (spec.get("commonName") or spec.get("dnsNames")):
        causes.append(("spec", "Invalid value: at least one of commonName or dnsNames must be set"))


_CHECKS = {
    "Deployment": _check_workload, "ReplicaSet": _check_workload, "Pod": _check_pod,
    "Secret": _check_secret, "Service": _check_service, "PodDisruptionBudget": _check_pdb,
    "Certificate": _check_certificate,
}
