"""Helpers for runbook flow tests: a sandbox with the demo estate, a catalog for it, and a gate resumer."""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from kubernetes import client, config

from sandbox.catalog import DEMO_SERVICES
from sandbox.server import Sandbox

NOW = dt.datetime.now(dt.timezone.utc)


POLICIES = {"production": {"policy": "one", "timeout_seconds": 60},
            "prod-two": {"policy": "two", "timeout_seconds": 60},
            "staging": {"policy": "auto"}, "frozen": {"policy": "auto"}}


def write_catalog(sandbox: Sandbox, directory: Path, environment: str = "staging", *, token: str | None = None,
                  **overrides: Any) -> Path:
    """A catalog with one environment on the sandbox's demo services: `production` (one approver),
    `prod-two` (two), `staging` (auto) or `frozen` (auto, inside a freeze window now); `overrides`
    replace its fields. One environment per catalog: two entries for the same Deployments with different
    policies are refused by the catalog (one would bypass the other's guards). `token`: the runbooks reach
    the cluster as that ServiceAccount token (sandbox.issue_token), held to RBAC; default: the admin."""
    kubeconfig = sandbox.write_kubeconfig(directory / "kubeconfig", token=token)
    env = {"cluster": {"kind": "kubeconfig", "kubeconfig": str(kubeconfig), "context": "sandbox"},
           "cooldown_seconds": 0, "verify_timeout_seconds": 60, "services": DEMO_SERVICES,
           "approval": POLICIES[environment]}
    if environment == "frozen":
        env["freeze_windows"] = [{"start": (NOW - dt.timedelta(hours=1)).isoformat(),
                                  "end": (NOW + dt.timedelta(hours=3)).isoformat(), "reason": "Black Friday freeze"}]
    path = directory / f"catalog-{environment}.yaml"
    path.write_text(yaml.safe_dump({"environments": {environment: {**env, **overrides}}}))
    return path


def apps_api(sandbox: Sandbox) -> client.AppsV1Api:
    return client.AppsV1Api(config.new_client_from_config_dict(sandbox.kubeconfig()))


def release(sandbox: Sandbox, image: str, *, namespace: str = "payments", name: str = "payments-api",
            container: str = "api") -> None:
    """Ship a new image the way CI does (a strategic merge patch) and wait until it is observed."""
    apps_api(sandbox).patch_namespaced_deployment(
        name, namespace, {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}})
    sandbox.wait_for(lambda: sandbox.get("Deployment", name, namespace)["status"].get("observedGeneration")
                     == sandbox.get("Deployment", name, namespace)["metadata"]["generation"])


def wait_healthy(sandbox: Sandbox, *, namespace: str = "payments", name: str = "payments-api",
                 timeout: float = 30) -> None:
    def done() -> bool:
        d = sandbox.get("Deployment", name, namespace)
        s = d.get("status", {})
        return (s.get("observedGeneration") == d["metadata"]["generation"]
                and s.get("updatedReplicas") == s.get("availableReplicas") == d["spec"]["replicas"]
                and s.get("replicas") == d["spec"]["replicas"])
    sandbox.wait_for(done, timeout=timeout)


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for_paused_run(flow_name: str, *, after: dt.datetime, timeout: float = 60) -> str:
    """The id of the newest run of `flow_name` started after `after` that is Paused (waiting at a gate)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as prefect:
        while time.monotonic() < deadline:
            runs = prefect.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after)))
            paused = [r for r in runs if r.state and r.state.is_paused()]
            if paused:
                return str(paused[0].id)
            time.sleep(0.3)
    raise TimeoutError(f"no paused run of {flow_name} within {timeout}s")


def answered_at_gate(start: Callable[[], Any], flow_name: str, answer: Callable[[str], None]) -> tuple[dict, str]:
    """Run `start` in a thread, wait until its run of `flow_name` pauses at the gate, call `answer(run_id)`
    as a concurrent person would, and wait for the run to end. Returns ({"result"|"error": ...}, run id)."""
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    thread, box = run_in_thread(start)
    run_id = wait_for_paused_run(flow_name, after=started)
    answer(run_id)
    thread.join(timeout=120)
    assert not thread.is_alive(), f"the run of {flow_name} did not end after its gate was answered"
    return box, run_id


def held_until_watched(sandbox: Sandbox, path: str, field_selector: str) -> threading.Thread:
    """Hold the sandbox's controllers until a run lists `path` with `field_selector` (what it does just before
    it watches), so the change it waits for comes only after it listed: the run has to watch for it."""
    since = sandbox.requests.mark()
    holding = threading.Event()

    def hold() -> None:
        with sandbox.controllers.held():
            holding.set()
            sandbox.wait_for(lambda: any(r.method == "GET" and r.path == path
                                         and r.query.get("fieldSelector") == field_selector
                                         for r in sandbox.requests.entries(since)), timeout=60)
    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    holding.wait(10)
    return thread
