"""From an alert webhook POST to the runbook's first line of flow code: p50 and p95 over N alerts, and a burst.

Not a test: prints a breakdown per stage, for each Prefect database (`--database sqlite`: Prefect's own file,
as `make run`; `--database postgresql`: a real PostgreSQL with fsync on, as `runbooks up --database`) and
engine (the warm runner, `runbooks serve`'s default, and Prefect's own `serve()`), side by side, against the
Prefect server's floor (an event posted straight to /api/events, until its run is created). Each column runs on
its own fresh `runbooks up` stack (subprocesses on loopback) over a sandbox this script starts: the demo estate
plus 20 `burst-NN` services. Alerts are sent one at a time to a staging service (auto-approved; after the first
run rolls it back, each run is a no-op), each once the previous run has finished (an alert for a service whose
run is in flight is answered 503). Then the burst: 20 alerts for the 20 burst services at once (each a
crash-looping release, so each run rolls back): every run must start (none lost), timed until the last one
logs its first line. The runner's limit is 20 here (RUNBOOKS_SERVE_LIMIT), as the Kubernetes worker's.
Usage: python benchmarks/alert_latency.py [--alerts 50] [--engine warm] [--database sqlite --database postgresql]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import httpx  # noqa: E402

from sandbox.catalog import demo_catalog  # noqa: E402
from sandbox.server import DEMO_MANIFESTS, Sandbox, SandboxConfig  # noqa: E402
from tests.e2e.stack import Stack, start_stack, stop_stack  # noqa: E402

BURST = 20

RULES = """rules:
  - name: bench
    match: {alertname: BenchAlert}
    runbook: emergency-rollback
    environment: {label: cluster, values: {bench: staging}}
    service: payments-api
    dedupe_seconds: 0
    cooldown_seconds: 0
  - name: burst
    match: {alertname: BenchBurst}
    runbook: emergency-rollback
    environment: {label: cluster, values: {bench: staging}}
    service:
      from_catalog: {namespace: "{labels.namespace}", deployment: "{labels.deployment}"}
    dedupe_seconds: 0
    cooldown_seconds: 0
"""


def parse(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def alert_payload(fingerprint: str, *, alertname: str = "BenchAlert", namespace: str = "payments-staging",
                  deployment: str = "payments-api") -> dict:
    labels = {"alertname": alertname, "namespace": namespace, "deployment": deployment,
              "severity": "critical", "cluster": "bench", "run": fingerprint}
    return {"version": "4", "status": "firing", "receiver": "bench", "groupKey": fingerprint,
            "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://127.0.0.1",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "bench"},
                        "startsAt": dt.datetime.now(dt.timezone.utc).isoformat(), "fingerprint": fingerprint}]}


def wait_run(api: str, marker: str, timeout: float = 60, limit: int = 5) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        due = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat()
        body = {"flow_runs": {"expected_start_time": {"before_": due}},   # not the scheduler's future runs
                "sort": "EXPECTED_START_TIME_DESC", "limit": limit}
        for run in httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json():
            if marker in json.dumps(run["parameters"]):
                return run
        time.sleep(0.02)
    raise TimeoutError(f"no run for {marker}")


def first_line(api: str, run_id: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 50}
    while time.monotonic() < deadline:
        for log in httpx.post(f"{api}/logs/filter", json=body, timeout=10).json():
            if "emergency-rollback started for" in log["message"]:
                return parse(log["timestamp"])
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} never logged its first line")


def finished(api: str, run_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()["state_type"] in ("COMPLETED", "FAILED",
                                                                                       "CRASHED", "CANCELLED"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"run {run_id} did not finish")


def state_times(api: str, run_id: str) -> dict[str, float]:
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=10).json()
    return {s["type"]: parse(s["timestamp"]) for s in sorted(states, key=lambda s: s["timestamp"])}


def one_alert(stack: Stack) -> dict[str, float]:
    marker = uuid.uuid4().hex
    t0 = time.time()
    response = httpx.post(f"{stack.receiver_url}/alerts/alertmanager", json=alert_payload(marker),
                          headers={"Authorization": f"Bearer {stack.receiver_token}"}, timeout=30)
    t_accepted = time.time()
    assert response.status_code == 202, response.text
    run = wait_run(stack.api_url, marker)
    line = first_line(stack.api_url, run["id"])
    finished(stack.api_url, run["id"])   # the next alert on this service would be answered 503 (in flight)
    states = state_times(stack.api_url, run["id"])
    created = parse(run["created"])
    return {"receiver": t_accepted - t0, "event -> run created": created - t_accepted,
            "run picked up": states.get("PENDING", created) - created,
            "run process -> first line": line - states.get("PENDING", created), "total": line - t0}


def floor(stack: Stack) -> float:
    """The server's own floor: an event posted straight to /api/events until its run is created."""
    marker = uuid.uuid4().hex
    event = {"occurred": dt.datetime.now(dt.timezone.utc).isoformat(), "event": "runbooks.alert.emergency-rollback",
             "resource": {"prefect.resource.id": f"runbooks.alert.{marker}"}, "id": str(uuid.uuid4()),
             "payload": {"parameters": {"service": "payments-api", "environment": "staging", "reason": marker,
                                        "requested_by": "bench", "pod": ""}, "alert": None}}
    t0 = time.time()
    assert httpx.post(f"{stack.api_url}/events", json=[event], timeout=10).status_code in (200, 204)
    run = wait_run(stack.api_url, marker)
    first_line(stack.api_url, run["id"])
    finished(stack.api_url, run["id"])            # let it finish its work before the next measurement
    return parse(run["created"]) - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def burst(stack: Stack) -> dict[str, float]:
    """20 alerts for 20 services at once: how many runs started, and when the last one reached its first line."""
    markers = [uuid.uuid4().hex for _ in range(BURST)]

    def send(index: int) -> int:
        payload = alert_payload(markers[index], alertname="BenchBurst", namespace="burst",
                                deployment=f"burst-{index:02d}")
        return httpx.post(f"{stack.receiver_url}/alerts/alertmanager", json=payload, timeout=60,
                          headers={"Authorization": f"Bearer {stack.receiver_token}"}).status_code
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        codes = list(pool.map(send, range(BURST)))
    accepted = time.time() - t0
    created, picked, lines = [], [], []
    for marker in markers:
        try:
            run = wait_run(stack.api_url, marker, timeout=120, limit=50)
            lines.append(first_line(stack.api_url, run["id"], timeout=120))
        except TimeoutError:
            continue
        created.append(parse(run["created"]))
        picked.append(state_times(stack.api_url, run["id"]).get("PENDING", created[-1]))
    return {"accepted (202)": float(codes.count(202)), "all 20 POSTs answered": accepted,
            "runs started": float(len(lines)), "until the last run was created": max(created, default=t0) - t0,
            "until the last was picked up": max(picked, default=t0) - t0,
            "until the last run's first line": max(lines, default=t0) - t0}


def burst_estate(directory: Path) -> Path:
    """20 one-replica services in namespace `burst`, each on a crash-looping release over a good one."""
    documents = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "burst"}}]
    for i in range(BURST):
        name = f"burst-{i:02d}"
        labels = {"app.kubernetes.io/name": name}
        documents.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": name, "namespace": "burst", "labels": labels,
            "annotations": {"sandbox.runbooks.dev/previous-images": "app=ghcr.io/example/burst:1.0.0"}},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 120, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": "ghcr.io/example/burst:1.1.0-crashloop"}]}}}})
    path = directory / "burst.yaml"
    path.write_text("\n---\n".join(json.dumps(d) for d in documents))
    return path


def bench_catalog(sandbox: Sandbox, directory: Path) -> Path:
    """The demo catalog plus the burst services in staging (auto-approved)."""
    catalog = demo_catalog(sandbox.write_kubeconfig(directory / "kubeconfig"))
    catalog["environments"]["staging"]["services"].update(
        {f"burst-{i:02d}": {"namespace": "burst", "deployment": f"burst-{i:02d}"} for i in range(BURST)})
    path = directory / "catalog.yaml"
    path.write_text(json.dumps(catalog))
    return path


def measure(engine: str, database: str | None, alerts: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp, "rules.yaml")
        rules.write_text(RULES)
        sandbox = Sandbox(SandboxConfig(speed=10, manifests=(DEMO_MANIFESTS, burst_estate(Path(tmp))))).start()
        stack = start_stack(Path(tmp), sandbox_speed=10, database=database, extra_env={
            "RUNBOOKS_ALERT_RULES": str(rules), "RUNBOOKS_SERVE_ENGINE": engine, "RUNBOOKS_SERVE_LIMIT": str(BURST),
            "RUNBOOKS_CATALOG": str(bench_catalog(sandbox, Path(tmp)))})
        try:
            one_alert(stack)                          # warm-up
            samples, floors = [], []
            for i in range(alerts):                   # floors interleaved: both see the same load
                samples.append(one_alert(stack))
                if i % 5 == 4 or alerts < 5:
                    floors.append(floor(stack))
            burst_result = burst(stack)
        finally:
            stop_stack(stack)
            sandbox.stop()
    stages = {stage: (statistics.median([s[stage] for s in samples]), pct([s[stage] for s in samples], 0.95))
              for stage in samples[0]}
    stages["floor: event -> run created"] = (statistics.median(floors), pct(floors, 0.95))
    return {"stages": stages, "burst": burst_result}


def report(results: dict[str, dict], alerts: int) -> None:
    columns = list(results)
    print(f"== {alerts} alerts one at a time: p50 / p95 seconds ==")
    print(f"  {'stage':<32}" + "".join(f"{c:>26}" for c in columns))
    for stage in results[columns[0]]["stages"]:
        print(f"  {stage:<32}" + "".join(f"{results[c]['stages'][stage][0]:>12.2f} / {results[c]['stages'][stage][1]:<10.2f}"
                                          for c in columns))
    print(f"== burst: {BURST} alerts for {BURST} services at once ==")
    for row in results[columns[0]]["burst"]:
        print(f"  {row:<32}" + "".join(f"{results[c]['burst'][row]:>26.2f}" for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--engine", action="append", choices=("warm", "prefect"))
    parser.add_argument("--database", action="append", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    results = {}
    postgres = None
    try:
        for database in args.database or ["sqlite", "postgresql"]:
            if database == "postgresql" and postgres is None:
                from tests.postgres import PostgresServer
                postgres = PostgresServer(durable=True).start()
            for engine in args.engine or ["warm", "prefect"]:
                url = postgres.create_database(f"bench_{engine}") if database == "postgresql" else None
                results[f"{engine} on {database}"] = measure(engine, url, args.alerts)
                print(f"measured {engine} on {database}: {results[f'{engine} on {database}']}", flush=True)
    finally:
        if postgres is not None:
            postgres.stop()
    report(results, args.alerts)


if __name__ == "__main__":
    main()
