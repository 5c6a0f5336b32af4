"""Defaulting and validation, as the real API server applies them before storing an object."""
from __future__ import annotations

import base64
import binascii
import re

from . import admission_rbac as rbac
from . import admission_workloads as workloads
from . import errors
from .resources import ResourceType

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def default(resource: ResourceType, obj: dict) -> dict:
    """Fill the defaults the real server fills, so templates compare equal the way controllers expect."""
    kind = resource.kind
    workload_default = workloads.DEFAULTS.get(kind) or rbac.DEFAULTS.get(kind)
    if workload_default is not None:
        workload_default(obj)
    elif kind == "Service":
        _default_service(obj.setdefault("spec", {}))
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


def _default_service(spec: dict) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


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
    spec = obj.get("spec") or {}
    for i, port in enumerate(spec.get("ports") or []):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append((f"spec.ports[{i}].port", f"Invalid value: {number!r}: must be between 1 and 65535"))
    was = (old or {}).get("spec") or {}
    if was.get("clusterIPs") and spec.get("clusterIPs") and spec["clusterIPs"][0] != was["clusterIPs"][0] \
            and "ExternalName" not in (spec.get("type"), was.get("type")):
        causes.append(("spec.clusterIPs[0]", f'Invalid value: "{spec["clusterIPs"][0]}": may not change once set'))


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
    **workloads.CHECKS, **rbac.CHECKS,
    "Secret": _check_secret, "Service": _check_service, "PodDisruptionBudget": _check_pdb,
    "Certificate": _check_certificate,
}
