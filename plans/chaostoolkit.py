"""Chaos Toolkit experiments (JSON or YAML) mapped onto a drill, for the chaostoolkit-kubernetes actions and
probes that have a drill equivalent. Anything else is refused, naming it, before any write.

Why refuse rather than skip: an experiment whose action we silently dropped would "pass" without having
injected anything. The mapping is strict about arguments too: a namespace or Deployment other than the
drilled service's, or an argument whose meaning we do not reproduce, is an error naming it.
The README's "Chaos Toolkit experiments" table lists what maps onto what.
"""
from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel

from .chaos import (Experiment, ExperimentError, HealthRatio, NodeDrain, PodKill, ReadyReplicas, ScaleDown,
                    parse_experiment)

K8S = "chaosk8s"
# Chaos Toolkit checks its hypothesis before and after the method only; a drill also watches during the
# fault, so a mapped experiment aborts when the service has no Ready pod left (never a full outage).
SAFETY_FLOOR = {"kind": "ready-replicas", "at_least": 1}


class ServiceRef(BaseModel):
    """The catalog service the experiment is run against (Chaos Toolkit experiments do not name one)."""
    name: str
    namespace: str
    deployment: str


def is_chaostoolkit(raw: dict) -> bool:
    return "method" in raw and "fault" not in raw


def from_chaostoolkit(raw: dict, service: ServiceRef, source: str) -> Experiment:
    """Map a Chaos Toolkit experiment onto ours; ExperimentError names the activity or argument refused."""
    method = [a for a in raw.get("method") or [] if isinstance(a, dict)]
    actions = [a for a in method if a.get("type") == "action"]
    for index, activity in enumerate(method):
        if activity.get("type") != "action":
            raise ExperimentError(f"{source}: method[{index}] ({_name(activity)}) is a {activity.get('type')!r}; "
                                  "a drill's method holds exactly one action (its fault)")
    if len(actions) != 1:
        raise ExperimentError(f"{source}: method has {len(actions)} actions; a drill injects exactly one fault")
    action = actions[0]
    fault = _map(action, ACTIONS, "method[0]", service, source)
    hold = (action.get("pauses") or {}).get("after")
    if not isinstance(hold, (int, float)) or hold <= 0:
        raise ExperimentError(f"{source}: method[0].pauses.after must say how many seconds to hold the fault")
    hypothesis = raw.get("steady-state-hypothesis") or {}
    probes = [_probe(p, i, service, source) for i, p in enumerate(hypothesis.get("probes") or [])]
    if not probes:
        raise ExperimentError(f"{source}: steady-state-hypothesis has no probes: a drill needs one to check "
                              "before, during and after the fault")
    for index, rollback in enumerate(raw.get("rollbacks") or []):
        _check_rollback(rollback, index, fault, source)
    return parse_experiment({"title": raw.get("title") or source, "service": service.name, "fault": fault,
                             "hypothesis": probes, "duration_seconds": hold, "abort_conditions": [SAFETY_FLOOR],
                             "description": raw.get("description") or ""}, source)


def _name(activity: dict) -> str:
    provider = activity.get("provider") or {}
    if provider.get("type") == "python":
        return f"{provider.get('module')}.{provider.get('func')}"
    return f"{provider.get('type')} provider {activity.get('name', '')!r}".strip()


def _map(activity: dict, table: dict, where: str, service: ServiceRef, source: str) -> dict:
    provider = activity.get("provider") or {}
    key = _name(activity) if provider.get("type") == "python" else provider.get("type")
    mapper = table.get(key)
    if mapper is None:
        allowed = ", ".join(sorted(table))
        raise ExperimentError(f"{source}: {where} uses {_name(activity)}, which a drill cannot run; "
                              f"supported: {allowed}")
    args = dict(provider.get("arguments") or {}) if provider.get("type") == "python" else dict(provider)
    return mapper(args, activity, f"{where} ({key})", service, source)


def _take(args: dict, allowed: set[str], where: str, source: str) -> dict:
    unknown = sorted(set(args) - allowed - {"secrets"})
    if unknown:
        raise ExperimentError(f"{source}: {where} has arguments a drill does not reproduce: {', '.join(unknown)}")
    return args


def _same(value: Any, expected: str, what: str, where: str, source: str) -> None:
    if value != expected:
        raise ExperimentError(f"{source}: {where} {what} is {value!r}, but the drilled service's is {expected!r}")


def _terminate_pods(args, _activity, where, service, source) -> dict:
    args = _take(args, {"label_selector", "ns", "qty", "mode", "all", "rand"}, where, source)
    _same(args.get("ns", "default"), service.namespace, "argument ns", where, source)
    if args.get("all"):
        return PodKill(share=1.0).model_dump()
    mode, qty = args.get("mode", "fixed"), args.get("qty", 1)
    if mode not in ("fixed", "percentage"):
        raise ExperimentError(f"{source}: {where} argument mode must be fixed or percentage, not {mode!r}")
    return (PodKill(share=qty / 100) if mode == "percentage" else PodKill(count=qty)).model_dump()


def _scale_deployment(args, _activity, where, service, source) -> dict:
    args = _take(args, {"name", "replicas", "ns"}, where, source)
    _same(args.get("ns", "default"), service.namespace, "argument ns", where, source)
    _same(args.get("name"), service.deployment, "argument name", where, source)
    return ScaleDown(replicas=args.get("replicas")).model_dump()


def _drain_nodes(args, _activity, where, service, source) -> dict:
    args = _take(args, {"name", "pod_label_selector", "pod_namespace", "count", "timeout",
                        "delete_pods_with_local_storage"}, where, source)
    if args.get("pod_namespace") not in (None, service.namespace):
        _same(args.get("pod_namespace"), service.namespace, "argument pod_namespace", where, source)
    if args.get("count") not in (None, 1):
        raise ExperimentError(f"{source}: {where} argument count must be 1: a drill drains one node")
    return NodeDrain(node=args.get("name")).model_dump()


def _deployment_probe(at_least: int | str) -> Callable:
    def mapper(args, activity, where, service, source) -> dict:
        args = _take(args, {"name", "ns", "label_selector", "raise_on_unavailable",
                            "raise_on_not_partially_available"}, where, source)
        _same(args.get("ns", "default"), service.namespace, "argument ns", where, source)
        _same(args.get("name"), service.deployment, "argument name", where, source)
        _tolerance_true(activity, where, source)
        return ReadyReplicas(at_least=at_least).model_dump()
    return mapper


def _count_min_pods(args, activity, where, service, source) -> dict:
    args = _take(args, {"label_selector", "phase", "min_count", "ns"}, where, source)
    _same(args.get("ns", "default"), service.namespace, "argument ns", where, source)
    if args.get("phase", "Running") != "Running":
        raise ExperimentError(f"{source}: {where} argument phase must be Running (a drill counts Ready pods)")
    _tolerance_true(activity, where, source)
    return ReadyReplicas(at_least=args.get("min_count", 2)).model_dump()


def _http(provider, activity, where, _service, source) -> dict:
    tolerance = activity.get("tolerance")
    codes = tolerance if isinstance(tolerance, list) else [tolerance]
    if not codes or not all(isinstance(c, int) and 200 <= c < 300 for c in codes):
        raise ExperimentError(f"{source}: {where} tolerance must be a 2xx status (or a list of them), "
                              f"not {tolerance!r}")
    if not isinstance(provider.get("url"), str):
        raise ExperimentError(f"{source}: {where} needs a url")
    return HealthRatio(at_least=1.0, url=provider["url"], window_seconds=0.5).model_dump()   # a few requests, not one


def _tolerance_true(activity: dict, where: str, source: str) -> None:
    if activity.get("tolerance") is not True:
        raise ExperimentError(f"{source}: {where} tolerance must be true, not {activity.get('tolerance')!r}")


def _probe(probe: object, index: int, service: ServiceRef, source: str) -> dict:
    if not isinstance(probe, dict) or probe.get("type") != "probe":
        raise ExperimentError(f"{source}: steady-state-hypothesis.probes[{index}] is not a probe")
    return _map(probe, PROBES, f"steady-state-hypothesis.probes[{index}]", service, source)


# Rollbacks that undo the fault the drill restores by itself: accepted (and not run twice).
RESTORES = {"pod-kill": set(), "scale-down": {f"{K8S}.deployment.actions.scale_deployment"},
            "node-drain": {f"{K8S}.node.actions.uncordon_node"}}


def _check_rollback(rollback: object, index: int, fault: dict, source: str) -> None:
    name = _name(rollback) if isinstance(rollback, dict) else repr(rollback)
    if name not in RESTORES[fault["kind"]]:
        raise ExperimentError(f"{source}: rollbacks[{index}] uses {name}, which does not undo the drill's "
                              f"{fault['kind']} fault; the drill restores by itself, so only "
                              f"{', '.join(sorted(RESTORES[fault['kind']])) or 'no rollback'} is accepted here")


ACTIONS: dict[str, Callable] = {
    f"{K8S}.pod.actions.terminate_pods": _terminate_pods,
    f"{K8S}.deployment.actions.scale_deployment": _scale_deployment,
    f"{K8S}.node.actions.drain_nodes": _drain_nodes,
}
PROBES: dict[str, Callable] = {
    f"{K8S}.deployment.probes.deployment_available_and_healthy": _deployment_probe("all"),
    f"{K8S}.deployment.probes.deployment_partially_available": _deployment_probe(1),
    f"{K8S}.pod.probes.count_min_pods": _count_min_pods,
    "http": _http,
}


def resolve_experiment(raw: dict, source: str, *, service: str, ref: Callable[[str], ServiceRef]) -> Experiment:
    """Our experiment, or a Chaos Toolkit one mapped onto ours (it names no service: `service` does)."""
    if not is_chaostoolkit(raw):
        experiment = parse_experiment(raw, source)
        if service and service != experiment.service:
            raise ExperimentError(f"{source} drills service {experiment.service!r}, but the run names {service!r}")
        return experiment
    if not service:
        raise ExperimentError(f"{source} is a Chaos Toolkit experiment, which names no catalog service: "
                              "pass service")
    return from_chaostoolkit(raw, ref(service), source)
