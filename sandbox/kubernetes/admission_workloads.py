"""Defaulting and validation of pods and the workloads that template them (Deployment, ReplicaSet,
DaemonSet, Job), as the real server's defaulters and validators apply them."""
from __future__ import annotations

import json
from typing import Callable

from .selectors import SelectorError, label_selector_from_object

Causes = list[tuple[str, str]]


def default_pod_spec(spec: dict) -> None:
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


def _template(spec: dict) -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def default_pod(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")   # ServiceAccount admission
    spec["serviceAccount"] = spec["serviceAccountName"]
    obj.setdefault("status", {}).setdefault("phase", "Pending")
    obj["status"].setdefault("qosClass", "BestEffort")


def default_replicated(obj: dict, deployment: bool = False) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if deployment:
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
    _template(spec)


def default_daemonset(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(spec)


def default_job(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template(spec)
    labels = spec["template"]["metadata"].get("labels")
    if labels and not obj.setdefault("metadata", {}).get("labels"):     # SetDefaults_Job
        obj["metadata"]["labels"] = dict(labels)


def check_pod_spec(spec: object, path: str, causes: Causes) -> None:
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


def _check_selector(spec: dict, old: dict | None, causes: Causes, kind: str) -> bool:
    """The selector is set, valid, matches the template's labels, and never changes; False when absent."""
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not selector:
        causes.append(("spec.selector", "Required value"))
        return False
    try:
        parsed = label_selector_from_object(selector)
    except SelectorError as exc:
        causes.append(("spec.selector", f"Invalid value: {exc}"))
        return False
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if parsed.empty:
        causes.append(("spec.selector", f"Invalid value: empty selector is invalid for {kind}"))
    elif not parsed.matches(labels):
        causes.append(("spec.template.metadata.labels",
                       f"Invalid value: {go_string_map(labels)}: `selector` does not match template `labels`"))
    if old is not None and old.get("spec", {}).get("selector") != selector:
        causes.append(("spec.selector", f"Invalid value: {selector!r}: field is immutable"))
    return True


def _spec(obj: dict, causes: Causes) -> dict | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        causes.append(("spec", "Required value"))
        return None
    return spec


def check_replicated(obj: dict, old: dict | None, causes: Causes) -> None:
    spec = _spec(obj, causes)
    if spec is None:
        return
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    if not _check_selector(spec, old, causes, "deployment"):
        return
    check_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec", causes)
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= spec.get("minReadySeconds", 0)):
        causes.append(("spec.progressDeadlineSeconds",
                       f"Invalid value: {deadline!r}: must be greater than minReadySeconds"))


def _check_restart_policy(spec: dict, allowed: tuple[str, ...], causes: Causes) -> None:
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in allowed:
        causes.append(("spec.template.spec.restartPolicy", f'Unsupported value: "{policy}": supported values: '
                       + ", ".join(f'"{v}"' for v in allowed)))


def check_daemonset(obj: dict, old: dict | None, causes: Causes) -> None:
    spec = _spec(obj, causes)
    if spec is None:
        return
    _check_selector(spec, old, causes, "daemonset")
    check_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec", causes)
    _check_restart_policy(spec, ("Always",), causes)
    kind = (spec.get("updateStrategy") or {}).get("type")
    if kind not in ("RollingUpdate", "OnDelete"):
        causes.append(("spec.updateStrategy", f'Unsupported value: "{kind}": supported values: "OnDelete", '
                                              '"RollingUpdate"'))


def check_job(obj: dict, old: dict | None, causes: Causes) -> None:
    spec = _spec(obj, causes)
    if spec is None:
        return
    for field in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            causes.append((f"spec.{field}", f"Invalid value: {value!r}: must be greater than or equal to 0"))
    _check_selector(spec, old, causes, "job")
    check_pod_spec((spec.get("template") or {}).get("spec"), "spec.template.spec", causes)
    _check_restart_policy(spec, ("OnFailure", "Never"), causes)


def go_string_map(labels: object) -> str:
    """Go's %#v of a map[string]string, as field.Invalid prints it: map[string]string{"app":"web"}."""
    if not isinstance(labels, dict):
        return repr(labels)
    return "map[string]string{" + ", ".join(f"{json.dumps(str(k))}:{json.dumps(str(v))}"
                                             for k, v in sorted(labels.items())) + "}"


def check_pod(obj: dict, old: dict | None, causes: Causes) -> None:
    check_pod_spec(obj.get("spec"), "spec", causes)
    if old is not None:
        mutable = ("containers", "activeDeadlineSeconds", "tolerations")
        was, now = old.get("spec", {}), obj.get("spec", {})
        if {k: v for k, v in was.items() if k not in mutable} != {k: v for k, v in now.items() if k not in mutable}:
            if was.get("nodeName") != now.get("nodeName") and not was.get("nodeName"):
                return  # binding a pending pod to a node
            causes.append(("spec", "Forbidden: pod updates may not change fields other than `spec.containers[*]."
                                   "image`, `spec.activeDeadlineSeconds` or `spec.tolerations`"))


DEFAULTS: dict[str, Callable[[dict], None]] = {
    "Pod": default_pod, "Deployment": lambda obj: default_replicated(obj, deployment=True),
    "ReplicaSet": default_replicated,
    "DaemonSet": default_daemonset, "Job": default_job,
}
CHECKS: dict[str, Callable[[dict, dict | None, Causes], None]] = {
    "Pod": check_pod, "Deployment": check_replicated, "ReplicaSet": check_replicated,
    "DaemonSet": check_daemonset, "Job": check_job,
}
