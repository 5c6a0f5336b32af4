"""Read-only checks with deadlines that watch the API instead of sleeping."""
from __future__ import annotations

import time

import httpx
from kubernetes import watch
from kubernetes.client import AppsV1Api, CoreV1Api
from prefect import task
from prefect.cache_policies import NO_CACHE

from plans.kubernetes import DeploymentState, deployment_state, rollout_status
from plans.record import Check

from .calls import call, call_json
from .errors import TransientError, classify
from .kubernetes.pods import selector_string


@task(name="deployment_rollout_complete", cache_policy=NO_CACHE)
def deployment_rollout_complete(api: AppsV1Api, *, namespace: str, name: str, timeout_seconds: float) -> Check:
    """Watch the Deployment until its rollout completes, fails its progress deadline, or time runs out.

    A watch cut mid-stream resumes from the last resourceVersion; an expired version re-lists.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    field = f"metadata.name={name}"
    version: str | None = None
    message = "not observed yet"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Check(name="rollout complete", passed=False, seconds=time.monotonic() - started,
                         detail=f"timed out after {timeout_seconds:.0f}s: {message}")
        try:
            if version is None:
                listed = call_json(api.list_namespaced_deployment, namespace, field_selector=field)
                if not listed["items"]:
                    return Check(name="rollout complete", passed=False, detail=f"deployment {name} is gone")
                state = deployment_state({**listed["items"][0]})
                done, message = rollout_status(state)
                if done:
                    return _rollout_check(state, message, started)
                version = listed["metadata"]["resourceVersion"]
            stream = watch.Watch().stream(api.list_namespaced_deployment, namespace, field_selector=field,
                                          resource_version=version, timeout_seconds=max(1, int(remaining)),
                                          _request_timeout=remaining + 5)
            for event in stream:
                raw = api.api_client.sanitize_for_serialization(event["object"])
                version = raw["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    return Check(name="rollout complete", passed=False, detail=f"deployment {name} was deleted")
                done, message = rollout_status(deployment_state(raw))
                if done:
                    return _rollout_check(deployment_state(raw), message, started)
        except Exception as exc:
            mapped = classify(exc)
            if getattr(exc, "status", None) == 410:
                version = None                  # too old: re-list
                continue
            if not isinstance(mapped, TransientError):
                raise
            time.sleep(0.2)                     # a cut watch or a transient error: resume from `version`


def _rollout_check(state: DeploymentState, message: str, started: float) -> Check:
    passed = "successfully rolled out" in message
    return Check(name="rollout complete", passed=passed, detail=message, seconds=time.monotonic() - started)


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
