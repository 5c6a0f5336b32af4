"""Chaos drill: how fast a drill aborts once its hypothesis breaks. Not a test: prints median and max.

Each of N drills (default 20) runs the real `chaos-drill` flow (in-process Prefect test server) on a fresh
sandbox: payments-api (3 replicas) is scaled down to 1 while the hypothesis says "at least 2 Ready". An
in-process subscriber to the sandbox's own store records the moment the hypothesis breaks there (the
second pod stops being a live Ready pod); the runbook's abort is when its watch noticed (the scorecard's
`aborted at`) and when its restore write (the PATCH scaling back) reached the sandbox. The baseline, side
by side: a plain client watch of the same pods (the kubernetes client's `watch.Watch`, no Prefect, no
runbook) noticing the same break. Goal: abort under 1 s, watched, not polled.
Usage: python benchmarks/chaos.py [--drills N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")   # loopback only
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig  # noqa: E402
from sandbox.kubernetes.resources import BY_KIND  # noqa: E402
from tests.runbook_helpers import wait_healthy, write_catalog  # noqa: E402

NS, NAME, AT_LEAST = "payments", "payments-api", 2
EXPERIMENT = {"title": "bench", "service": NAME, "duration_seconds": 30, "fault": {"kind": "scale-down", "replicas": 1},
              "hypothesis": [{"kind": "ready-replicas", "at_least": AT_LEAST}]}


def live_ready(pods: dict) -> int:
    def ready(pod: dict) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return sum(1 for p in pods.values() if not p["metadata"].get("deletionTimestamp") and ready(p))


class StampedQueue(queue.Queue):
    """The watcher's queue, stamping each event with the moment the store published it (not when a
    consumer thread got round to it)."""

    def put(self, item, block=True, timeout=None) -> None:
        super().put(item if item is None else (time.time(), item), block, timeout)


def break_in_store(sandbox: Sandbox) -> dict:
    """Subscribe to the sandbox's store: record when the live Ready pods of payments-api drop below AT_LEAST."""
    found: dict = {}
    pods = {p["metadata"]["name"]: p for p in sandbox.list("Pod", NS) if p["metadata"]["name"].startswith(NAME)}
    with sandbox.store.lock:           # the store publishes under this (reentrant) lock: no event slips by
        watcher = sandbox.store.watch(BY_KIND["Pod"], NS, lambda o: o["metadata"]["name"].startswith(NAME),
                                      str(sandbox.store.resource_version))
        watcher.events = StampedQueue()

    def follow() -> None:
        while "at" not in found:
            item = watcher.events.get()
            if item is None:
                return
            stamp, (kind, obj) = item
            pods.pop(obj["metadata"]["name"], None) if kind == "DELETED" else pods.__setitem__(
                obj["metadata"]["name"], obj)
            if live_ready(pods) < AT_LEAST:
                found["at"] = stamp
        watcher.close()
    threading.Thread(target=follow, daemon=True).start()
    return found


def baseline_notice(sandbox: Sandbox) -> dict:
    """A plain kubernetes-client watch of the same pods, noticing the same break (no Prefect, no runbook)."""
    found: dict = {}
    core = client.CoreV1Api(config.new_client_from_config_dict(sandbox.kubeconfig()))
    listed = core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/name={NAME}")
    pods = {p.metadata.name: core.api_client.sanitize_for_serialization(p) for p in listed.items}

    def follow() -> None:
        for event in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector=f"app.kubernetes.io/name={NAME}",
                                          resource_version=listed.metadata.resource_version, timeout_seconds=60):
            raw = core.api_client.sanitize_for_serialization(event["object"])
            pods.pop(raw["metadata"]["name"], None) if event["type"] == "DELETED" else pods.__setitem__(
                raw["metadata"]["name"], raw)
            if live_ready(pods) < AT_LEAST:
                found["at"] = time.time()
                return
    threading.Thread(target=follow, daemon=True).start()
    return found


def scorecard_abort(run_id: str) -> float:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run_id])))
    text = next(a.data for a in artifacts if (a.key or "").startswith("chaos-scorecard-"))
    stamp = text.split("aborted at ")[1].split(": ")[0]
    return dt.datetime.fromisoformat(stamp).timestamp()


def one_drill(directory: Path) -> tuple[float, float, float]:
    from flows.chaos import chaos_drill
    from tasks.errors import VerificationFailed
    sandbox = Sandbox(SandboxConfig(speed=30.0, pod_ready_seconds=2.0, tick_seconds=0.02,
                                    manifests=(DEMO_MANIFESTS,))).start()
    try:
        wait_healthy(sandbox)
        path = write_catalog(sandbox, directory, "staging")
        raw = yaml.safe_load(path.read_text())
        raw["chaos"] = {"experiments": ".", "blast_radius": {"max_pod_share": 1.0}}
        path.write_text(yaml.safe_dump(raw))
        os.environ["RUNBOOKS_CATALOG"] = str(path)
        in_store, plain = break_in_store(sandbox), baseline_notice(sandbox)
        since = time.time()
        try:
            chaos_drill(environment="staging", requested_by="bench", experiment=EXPERIMENT)
            raise AssertionError("the drill did not abort")
        except VerificationFailed:
            pass
        patches = [r for r in sandbox.requests.writes(since) if r.method == "PATCH" and r.path.endswith("/scale")]
        restore_sent = patches[1].time                      # [0] is the fault, [1] the restore
        run_id = _last_run_id()
        return scorecard_abort(run_id) - in_store["at"], restore_sent - in_store["at"], plain["at"] - in_store["at"]
    finally:
        sandbox.stop()


def _last_run_id() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    with get_client(sync_client=True) as prefect:
        return str(prefect.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0].id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drills", type=int, default=20)
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness
    rows = []
    with prefect_test_harness(server_startup_timeout=120), tempfile.TemporaryDirectory() as tmp:
        for i in range(args.drills):
            directory = Path(tmp) / str(i)
            directory.mkdir()
            rows.append(one_drill(directory))
            print(f"drill {i + 1}: noticed {rows[-1][0] * 1000:.0f} ms, restore sent {rows[-1][1] * 1000:.0f} ms, "
                  f"plain watch {rows[-1][2] * 1000:.0f} ms after the break", flush=True)
    print("\n| from the hypothesis breaking in the sandbox to | median | max |\n|---|---|---|")
    for label, column in (("the runbook noticing it and aborting (its watch)", 0),
                          ("the runbook's restore write reaching the sandbox", 1),
                          ("baseline: a plain client watch noticing it", 2)):
        values = [row[column] for row in rows]
        print(f"| {label} | {statistics.median(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
