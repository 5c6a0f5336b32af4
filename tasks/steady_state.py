"""The chaos drill's steady-state probes: read-only, watched rather than polled.

The service's pods are followed through the Kubernetes watch API (a broken tolerance is noticed on the
event that breaks it, within milliseconds of the API server's change), and the health URL is sampled
several times a second into a sliding window. Both feed one `Monitor` that evaluates the probes.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import httpx
import urllib3
from kubernetes import watch
from kubernetes.client import CoreV1Api
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from plans.chaos import HealthRatio, Probe, ReadyReplicas, Restarts
from plans.kubernetes import PodState, pod_state
from plans.record import Check

from .calls import call_json
from .errors import TransientError, classify
from .kubernetes.pods import selector_string

HEALTH_INTERVAL = 0.1       # seconds between health URL samples
HEALTH_TIMEOUT = 2.0        # a sample slower than this counts as a failure
MIN_SAMPLES = 5             # a window is judged on at least this many requests
READ_TIMEOUT = 1.0          # a watch read that waits longer re-checks the clock, then resumes


class Observation(BaseModel):
    """What the watch saw during the fault (times are `time.time()` epochs, so the scorecard can compare)."""
    held: bool
    broken: str = ""                        # the tolerance that broke, and how
    broken_at: float | None = None
    first_effect_at: float | None = None    # when the fault's effect was first seen (time to detect)
    min_ready: int
    max_restarts: int
    min_health_ratio: float | None = None
    ended_at: float
    started_at: float

    def as_check(self) -> Check:
        """The hypothesis during the fault, as the scorecard and the verification show it."""
        ratio = f", min health ratio {self.min_health_ratio:.2f}" if self.min_health_ratio is not None else ""
        held = (f"held for {self.ended_at - self.started_at:.1f}s (min ready {self.min_ready}, "
                f"restarts {self.max_restarts}{ratio})")
        return Check(name="during: abort conditions", passed=self.held, detail=self.broken or held)


class Monitor:
    """Evaluates watched probes on every change of the pods or the health samples; thread-safe."""

    def __init__(self, probes: list[Probe], *, replicas: int) -> None:
        self.probes, self.replicas, self.baseline = probes, replicas, None
        self.lock, self.done, self.listed = threading.Lock(), threading.Event(), threading.Event()
        self.broken, self.broken_at, self.first_effect_at = "", None, None
        self.min_ready, self.max_restarts, self.min_ratio = replicas, 0, None
        self.started_at = time.time()

    def pods(self, pods: dict[str, PodState]) -> bool:
        if self.baseline is None:                       # the first list, before the fault: restarts so far
            self.baseline = {p.name: p.restarts for p in pods.values()}
            self.listed.set()
        live = [p for p in pods.values() if not p.terminating]
        ready = sum(p.ready for p in live)
        restarts = sum(max(0, p.restarts - self.baseline.get(p.name, 0)) for p in pods.values())
        with self.lock:
            self.min_ready, self.max_restarts = min(self.min_ready, ready), max(self.max_restarts, restarts)
            if ready < self.replicas or len(live) != ready or restarts:
                self._effect()
            for probe in self.probes:
                if isinstance(probe, ReadyReplicas) and ready < probe.minimum(self.replicas):
                    self._break(f"{probe.describe()} broken: {ready} ready")
                if isinstance(probe, Restarts) and restarts > probe.at_most:
                    self._break(f"{probe.describe()} broken: {restarts} restarts")
        return self.done.is_set()

    def health(self, probe: HealthRatio, ratio: float | None, failed: bool) -> None:
        with self.lock:
            if failed:
                self._effect()
            if ratio is not None:
                self.min_ratio = ratio if self.min_ratio is None else min(self.min_ratio, ratio)
                if ratio < probe.at_least:
                    self._break(f"{probe.describe()} broken: {ratio:.2f}")

    def _effect(self) -> None:
        if self.first_effect_at is None:
            self.first_effect_at = time.time()

    def _break(self, why: str) -> None:
        if not self.broken:
            self.broken, self.broken_at = why, time.time()
            self.done.set()

    def observation(self) -> Observation:
        with self.lock:
            return Observation(held=not self.broken, broken=self.broken, broken_at=self.broken_at,
                               first_effect_at=self.first_effect_at, min_ready=self.min_ready,
                               max_restarts=self.max_restarts, min_health_ratio=self.min_ratio, ended_at=time.time(),
                               started_at=self.started_at)


def follow_pods(core: CoreV1Api, *, namespace: str, selector: dict, on_change: Callable[[dict[str, PodState]], bool],
                deadline: float, stop: threading.Event) -> None:
    """List the pods, then watch them until `on_change` returns True, `stop` is set or the deadline passes.
    A read that times out, or a cut watch, resumes from the last resourceVersion; an expired one re-lists."""
    labels, version, pods = selector_string(selector), None, {}
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if version is None:
                listed = call_json(core.list_namespaced_pod, namespace, label_selector=labels)
                pods = {p.name: p for p in map(pod_state, listed.get("items") or [])}
                version = listed["metadata"]["resourceVersion"]
                if on_change(pods):
                    return
            remaining = deadline - time.monotonic()
            stream = watch.Watch().stream(core.list_namespaced_pod, namespace, label_selector=labels,
                                          resource_version=version, allow_watch_bookmarks=True,
                                          timeout_seconds=max(1, int(remaining) + 1),
                                          _request_timeout=max(0.05, min(READ_TIMEOUT, remaining)))
            for event in stream:
                raw = core.api_client.sanitize_for_serialization(event["object"])
                version = raw["metadata"].get("resourceVersion", version)
                if event["type"] == "BOOKMARK":
                    continue
                pod = pod_state(raw)
                if event["type"] == "DELETED":
                    pods.pop(pod.name, None)
                else:
                    pods[pod.name] = pod
                if on_change(pods) or stop.is_set() or time.monotonic() >= deadline:
                    return
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            continue                                        # no event within READ_TIMEOUT: check the clock
        except Exception as exc:                            # noqa: BLE001 - mapped; only transient ones resume
            if getattr(exc, "status", None) == 410:
                version = None
                continue
            if not isinstance(classify(exc), TransientError):
                raise
            time.sleep(0.1)


class HealthSamples(BaseModel):
    ratio: float
    count: int
    last_failure: str = ""


def sample_health(probe: HealthRatio, url: str, *, monitor: Monitor | None, deadline: float,
                  stop: threading.Event) -> HealthSamples:
    """Ask `url` every HEALTH_INTERVAL until the deadline (and at least MIN_SAMPLES times, so one request
    stalled by the prober's own machine cannot decide a window alone). The 2xx ratio over the last window is
    reported to `monitor` once a full window has been sampled."""
    samples: collections.deque[tuple[float, bool]] = collections.deque()
    started, count, last_failure = time.monotonic(), 0, ""
    with httpx.Client(timeout=HEALTH_TIMEOUT) as client:
        while not stop.is_set() and (time.monotonic() < deadline or count < MIN_SAMPLES):
            asked = time.monotonic()
            try:
                status = client.get(url).status_code
                ok, failure = 200 <= status < 300, f"HTTP {status}"
            except httpx.HTTPError as exc:
                ok, failure = False, type(exc).__name__
            now, count = time.monotonic(), count + 1
            last_failure = last_failure if ok else failure
            samples.append((now, ok))
            while len(samples) > MIN_SAMPLES and samples[0][0] < now - probe.window_seconds:
                samples.popleft()
            full = now - started >= probe.window_seconds and count >= MIN_SAMPLES
            if monitor is not None:
                monitor.health(probe, _ratio(samples) if full else None, failed=not ok)
            time.sleep(max(0.0, HEALTH_INTERVAL - (time.monotonic() - asked)))
    return HealthSamples(ratio=_ratio(samples), count=len(samples), last_failure=last_failure)


def _ratio(samples) -> float:
    return sum(ok for _, ok in samples) / len(samples) if samples else 0.0


class SteadyStateWatch:
    """The abort conditions, watched from before the fault (so its first effect cannot be missed) until the
    drill ends: the pods through the watch API, the health URL sampled into a sliding window. Use as a
    context manager around the fault; `watch_steady_state` waits on it for the duration."""

    def __init__(self, core: CoreV1Api, *, namespace: str, selector: dict, probes: list[Probe], replicas: int,
                 health_url: str | None, max_seconds: float) -> None:
        self.monitor = Monitor(probes, replicas=replicas)
        self.stop, self.errors = threading.Event(), []
        deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=sample_health, args=(p, p.url or health_url), daemon=True,
                                         kwargs=dict(monitor=self.monitor, deadline=deadline, stop=self.stop))
                        for p in probes if isinstance(p, HealthRatio)]
        self.threads.append(threading.Thread(target=self._pods, args=(core, namespace, selector, deadline),
                                             daemon=True))

    def _pods(self, core: CoreV1Api, namespace: str, selector: dict, deadline: float) -> None:
        try:
            follow_pods(core, namespace=namespace, selector=selector, on_change=self.monitor.pods, deadline=deadline,
                        stop=self.stop)
        except BaseException as exc:                # noqa: BLE001 - raised in the run's thread by watch_steady_state
            self.errors.append(exc)
            self.monitor.listed.set()
            self.monitor.done.set()

    def __enter__(self) -> "SteadyStateWatch":
        for thread in self.threads:
            thread.start()
        if not self.monitor.listed.wait(timeout=30) or self.errors:
            self.stop.set()
            raise self.errors[0] if self.errors else TransientError("the pods could not be listed to watch them")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


@task(name="watch_steady_state", cache_policy=NO_CACHE)
def watch_steady_state(watch: SteadyStateWatch, *, seconds: float) -> Observation:
    """Hold the fault for `seconds`; return at once when a watched tolerance breaks (the drill aborts)."""
    watch.monitor.done.wait(timeout=seconds)
    if watch.errors:
        raise watch.errors[0]
    return watch.monitor.observation()


@task(name="check_steady_state", cache_policy=NO_CACHE)
def check_steady_state(core: CoreV1Api, *, namespace: str, selector: dict, probes: list[Probe], replicas: int,
                       health_url: str | None, phase: str) -> list[Check]:
    """The hypothesis now (`phase`: before / after): Ready pods counted once, the health URL sampled over
    its window, and no container crash-looping (restarts are counted during the drill)."""
    listed = call_json(core.list_namespaced_pod, namespace, label_selector=selector_string(selector))
    pods = [pod_state(p) for p in listed.get("items") or []]
    live = [p for p in pods if not p.terminating]
    checks = []
    for probe in probes:
        if isinstance(probe, ReadyReplicas):
            ready = sum(p.ready for p in live)
            checks.append(Check(name=f"{phase}: {probe.describe()}", passed=ready >= probe.minimum(replicas),
                                detail=f"{ready}/{len(live)} pods Ready"))
        elif isinstance(probe, Restarts):
            looping = sorted(p.name for p in live if p.waiting_reason == "CrashLoopBackOff")
            checks.append(Check(name=f"{phase}: {probe.describe()}", passed=not looping,
                                detail=f"crash-looping: {', '.join(looping)}" if looping else "no crash loops"))
        else:
            url = probe.url or health_url
            sampled = sample_health(probe, url, monitor=None, deadline=time.monotonic() + probe.window_seconds,
                                    stop=threading.Event())
            failure = f" (last failure: {sampled.last_failure})" if sampled.last_failure else ""
            checks.append(Check(name=f"{phase}: {probe.describe()}", passed=sampled.ratio >= probe.at_least,
                                detail=f"{url}: {sampled.ratio:.2f} 2xx of {sampled.count} requests over "
                                       f"{probe.window_seconds:g}s{failure}"))
    return checks


@task(name="wait_until_recovered", cache_policy=NO_CACHE)
def wait_until_recovered(core: CoreV1Api, *, namespace: str, selector: dict, replicas: int,
                         timeout_seconds: float) -> Check:
    """Watch until `replicas` pods are Ready and no other is live (the service is back), or time runs out."""
    started, stop = time.monotonic(), threading.Event()
    seen: dict[str, int] = {}

    def back(pods: dict[str, PodState]) -> bool:
        live = [p for p in pods.values() if not p.terminating]
        seen["ready"], seen["live"] = sum(p.ready for p in live), len(live)
        return seen["ready"] >= replicas and seen["live"] == seen["ready"]
    follow_pods(core, namespace=namespace, selector=selector, on_change=back, deadline=started + timeout_seconds,
                stop=stop)
    passed = seen.get("ready", 0) >= replicas and seen.get("live") == seen.get("ready")
    detail = f"{seen.get('ready', 0)}/{seen.get('live', 0)} pods Ready (expected {replicas})"
    return Check(name="service recovered", passed=passed, seconds=time.monotonic() - started,
                 detail=detail if passed else f"not back within {timeout_seconds:.0f}s: {detail}")
