"""Read-only checks with deadlines that watch the API instead of sleeping."""
from __future__ import annotations

import time
from typing import Any, Callable

import httpx
from kubernetes import watch
from kubernetes.client import AppsV1Api, AutoscalingV2Api, CoreV1Api
from prefect import task
from prefect.cache_policies import NO_CACHE

from plans.cluster import hpa_settled as settled_rule
from plans.cluster import hpa_state, node_state
from plans.kubernetes import deployment_state, rollout_status
from plans.pools import POOL_LABEL
from plans.record import Check

from .calls import call, call_json
from .errors import TransientError, classify
from .kubernetes.pods import selector_string


Judge = Callable[[list[dict]], "tuple[bool, bool, str]"]     # objects -> (done, passed, message)


def watch_until(list_call: Callable, *args: Any, judge: Judge, timeout_seconds: float, check: str,
                **selectors: Any) -> Check:
    """List, then watch from that resourceVersion, keeping the listed objects current and judging them after
    every event, until the judge says done or the deadline passes. A watch cut mid-stream resumes from the
    last resourceVersion; an expired version (410) re-lists."""
    started = time.monotonic()
    deadline = started + timeout_seconds
    objects: dict[str, dict] = {}
    version: str | None = None
    message = "not observed yet"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Check(name=check, passed=False, seconds=time.monotonic() - started,
                         detail=f"timed out after {timeout_seconds:.0f}s: {message}")
        try:
            if version is None:
                listed = call_json(list_call, *args, **selectors)
                objects = {o["metadata"]["name"]: o for o in listed.get("items") or []}
                done, passed, message = judge(list(objects.values()))
                if done:
                    return Check(name=check, passed=passed, detail=message, seconds=time.monotonic() - started)
                version = listed["metadata"]["resourceVersion"]
            stream = watch.Watch().stream(list_call, *args, resource_version=version,
                                          timeout_seconds=max(1, int(remaining)), _request_timeout=remaining + 5,
                                          **selectors)
            for event in stream:
                raw = list_call.__self__.api_client.sanitize_for_serialization(event["object"])
                version = raw["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    objects.pop(raw["metadata"]["name"], None)
                else:
                    objects[raw["metadata"]["name"]] = raw
                done, passed, message = judge(list(objects.values()))
                if done:
                    return Check(name=check, passed=passed, detail=message, seconds=time.monotonic() - started)
        except Exception as exc:
            if getattr(exc, "status", None) == 410:
                version = None                  # too old: re-list
                continue
            if not isinstance(classify(exc), TransientError):
                raise
            time.sleep(0.2)                     # a cut watch or a transient error: resume from `version`


@task(name="deployment_rollout_complete", cache_policy=NO_CACHE)
def deployment_rollout_complete(api: AppsV1Api, *, namespace: str, name: str, timeout_seconds: float) -> Check:
    """Watch the Deployment until its rollout completes, fails its progress deadline, or time runs out."""
    def judge(items: list[dict]) -> tuple[bool, bool, str]:
        if not items:
            return True, False, f"deployment {name} is gone"
        done, message = rollout_status(deployment_state(items[0]))
        return done, done and "successfully rolled out" in message, message
    return watch_until(api.list_namespaced_deployment, namespace, judge=judge, timeout_seconds=timeout_seconds,
                       check="rollout complete", field_selector=f"metadata.name={name}")


@task(name="pool_nodes_ready", cache_policy=NO_CACHE)
def pool_nodes_ready(api: CoreV1Api, *, pool: str, expected: int, timeout_seconds: float) -> Check:
    """Watch an AKS agent pool's Nodes until exactly `expected` are there, all Ready and schedulable."""
    def judge(items: list[dict]) -> tuple[bool, bool, str]:
        nodes = [node_state(n) for n in items]
        ready = [n for n in nodes if n.ready and not n.unschedulable]
        message = f"node pool {pool}: {len(ready)}/{len(nodes)} nodes Ready and schedulable (expected {expected})"
        done = len(nodes) == len(ready) == expected
        return done, done, message
    return watch_until(api.list_node, judge=judge, timeout_seconds=timeout_seconds, check="nodes ready",
                       label_selector=f"{POOL_LABEL}={pool}")


@task(name="hpa_settled", cache_policy=NO_CACHE)
def hpa_settled(api: AutoscalingV2Api, apps: AppsV1Api, *, namespace: str, name: str,
                timeout_seconds: float) -> Check:
    """Watch the HPA until it has observed its bounds, wants what runs, and what runs is within them."""
    def judge(items: list[dict]) -> tuple[bool, bool, str]:
        if not items:
            return True, False, f"HPA {name} is gone"
        hpa = hpa_state(items[0])
        replicas = deployment_state(call_json(apps.read_namespaced_deployment, hpa.target, namespace)).replicas
        settled, message = settled_rule(hpa, replicas)
        return settled, settled, message
    return watch_until(api.list_namespaced_horizontal_pod_autoscaler, namespace, judge=judge,
                       timeout_seconds=timeout_seconds, check="HPA settled", field_selector=f"metadata.name={name}")


@task(name="count_ready_pods", cache_policy=NO_CACHE)
def count_ready_pods(api: CoreV1Api, *, namespace: str, selector: dict, expected: int,
                     images: dict[str, str] | None = None) -> Check:
    """All pods Ready, as many as expected, and (when given) running exactly the expected images."""
    pods = call(api.list_namespaced_pod, namespace, label_selector=selector_string(selector)).items
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    ready = [p for p in live if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    wrong = [p.metadata.name for p in live
             if images and {c.name: c.image for c in p.spec.containers} != images]
    passed = len(ready) == len(live) == expected and not wrong
    detail = f"{len(ready)}/{len(live)} pods Ready (expected {expected})"
    if wrong:
        detail += f"; pods with unexpected images: {', '.join(sorted(wrong))}"
    return Check(name="pods ready", passed=passed, detail=detail)


@task(name="health_url_answers", cache_policy=NO_CACHE)
def health_url_answers(url: str, *, timeout_seconds: float, interval: float = 1.0) -> Check:
    """The service's health URL answers 2xx before the deadline."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout_seconds:
        try:
            response = httpx.get(url, timeout=min(5.0, timeout_seconds))
            if 200 <= response.status_code < 300:
                return Check(name="health URL", passed=True, detail=f"{url} answered {response.status_code}",
                             seconds=time.monotonic() - started)
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(interval)
    return Check(name="health URL", passed=False, detail=f"{url} did not answer 2xx in {timeout_seconds:.0f}s "
                                                         f"(last: {last})")
