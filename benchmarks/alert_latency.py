"""From an alert webhook POST to the runbook's first line of flow code: p50 and p95 over N alerts.

Not a test: prints a breakdown per stage, for the warm runner (`runbooks serve`, the default) and for
Prefect's own `serve()`, against the Prefect server's floor (an event posted straight to /api/events,
until its run is created). Each engine runs on its own fresh `runbooks up` stack (subprocesses on
loopback); alerts are sent one at a time to a staging service (auto-approved; after the first run rolls it back, each run is a
no-op), each once the previous run has finished (an alert for a service whose run is in flight is answered 503).
Usage: python benchmarks/alert_latency.py [--alerts 50] [--engine warm --engine prefect]
"""
from __future__ import annotations

import argparse
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

from tests.e2e.stack import Stack, start_stack, stop_stack  # noqa: E402

RULES = """rules:
  - name: bench
    match: {alertname: BenchAlert}
    runbook: emergency-rollback
    environment: {label: cluster, values: {bench: staging}}
    service: payments-api
    dedupe_seconds: 0
    cooldown_seconds: 0
"""


def parse(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def alert_payload(fingerprint: str) -> dict:
    labels = {"alertname": "BenchAlert", "namespace": "payments-staging", "deployment": "payments-api",
              "severity": "critical", "cluster": "bench", "run": fingerprint}
    return {"version": "4", "status": "firing", "receiver": "bench", "groupKey": fingerprint,
            "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://127.0.0.1",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "bench"},
                        "startsAt": dt.datetime.now(dt.timezone.utc).isoformat(), "fingerprint": fingerprint}]}


def wait_run(api: str, marker: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        due = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat()
        body = {"flow_runs": {"expected_start_time": {"before_": due}},   # not the scheduler's future runs
                "sort": "EXPECTED_START_TIME_DESC", "limit": 5}
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


def measure(engine: str, alerts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp, "rules.yaml")
        rules.write_text(RULES)
        stack = start_stack(Path(tmp), sandbox_speed=10, extra_env={"RUNBOOKS_ALERT_RULES": str(rules),
                                                                     "RUNBOOKS_SERVE_ENGINE": engine})
        try:
            one_alert(stack)                          # warm-up
            samples, floors = [], []
            for i in range(alerts):                   # floors interleaved: both see the same load
                samples.append(one_alert(stack))
                if i % 5 == 4 or alerts < 5:
                    floors.append(floor(stack))
        finally:
            stop_stack(stack)
    print(f"== engine: {engine} ({alerts} alerts) ==")
    for stage in samples[0]:
        values = [s[stage] for s in samples]
        print(f"  {stage:<30} p50 {statistics.median(values):6.2f} s   p95 {pct(values, 0.95):6.2f} s")
    print(f"  {'floor: event -> run created':<30} p50 {statistics.median(floors):6.2f} s   "
          f"p95 {pct(floors, 0.95):6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--engine", action="append", choices=("warm", "prefect"))
    args = parser.parse_args()
    for engine in args.engine or ["warm", "prefect"]:
        measure(engine, args.alerts)


if __name__ == "__main__":
    main()
