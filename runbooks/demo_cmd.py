"""`runbooks demo-alert`: break a service in the sandbox, send the alert a monitoring stack would, and say
which run to approve.

Ships a crash-looping image of the service (as a bad release would), waits for a pod of the new ReplicaSet,
then posts the Alertmanager webhook kube-prometheus would send for it (KubePodCrashLooping with namespace,
pod, container, and cluster=runbooks-sandbox, which the shipped rules map to the demo's production) to the
receiver `runbooks up` started. The alert begins firing after the bad release, as a real one would, so the
runbook treats that release as the bad one. Then it waits (up to --wait seconds) for the emergency-rollback
run the alert started and prints its id and the command that approves it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import httpx

SERVICES = {"payments-api": ("payments", "api"), "checkout-web": ("checkout", "web"), "cart": ("checkout", "cart")}
DEMO_CLUSTER = "runbooks-sandbox"       # deployments/alert-rules.yaml maps it to production (demo only)
RUNBOOK = "emergency-rollback"
REVISION = "deployment.kubernetes.io/revision"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo-alert", help="make a sandbox service crash loop, alert on it, show the run",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="the directory `runbooks up` uses")
    parser.add_argument("--service", default="payments-api", choices=sorted(SERVICES))
    parser.add_argument("--receiver", default="http://127.0.0.1:9095")
    parser.add_argument("--api-url", default=os.environ.get("PREFECT_API_URL") or "http://127.0.0.1:4200/api",
                        help="the Prefect API `runbooks up` printed (default: $PREFECT_API_URL or port 4200)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the run (default 60)")
    parser.add_argument("--no-release", action="store_true", help="only send the alert (for the current pods)")
    parser.set_defaults(func=run)


def alertmanager_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted name/value pairs, 0xff-separated."""
    value = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def crash_looping_payload(namespace: str, pod: str, container: str, *, starts_at: dt.datetime, uid: str = "",
                          cluster: str = DEMO_CLUSTER, status: str = "firing") -> dict:
    """An Alertmanager v4 webhook for kubernetes-mixin's KubePodCrashLooping, labelled as kube-prometheus's
    expression `max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff",
    job="kube-state-metrics"}[5m]) >= 1` leaves them, plus the Prometheus external labels."""
    labels = {"alertname": "KubePodCrashLooping", "cluster": cluster, "container": container,
              "job": "kube-state-metrics", "namespace": namespace, "pod": pod, "prometheus": "monitoring/k8s",
              "reason": "CrashLoopBackOff", "severity": "warning", **({"uid": uid} if uid else {})}
    annotations = {"description": f'Pod {namespace}/{pod} ({container}) is in waiting state (reason: "CrashLoopBackOff").',
                   "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
                   "summary": "Pod is crash looping."}
    alert = {"status": status, "labels": labels, "annotations": annotations, "startsAt": starts_at.isoformat(),
             "endsAt": "0001-01-01T00:00:00Z", "fingerprint": alertmanager_fingerprint(labels),
             "generatorURL": "http://prometheus.monitoring.svc:9090/graph"}
    group = {"alertname": "KubePodCrashLooping", "namespace": namespace}
    return {"version": "4", "status": status, "receiver": "runbooks", "truncatedAlerts": 0,
            "groupKey": '{}:{alertname="KubePodCrashLooping", namespace="%s"}' % namespace,
            "groupLabels": group, "commonLabels": labels, "commonAnnotations": annotations,
            "externalURL": "http://alertmanager.monitoring.svc:9093", "alerts": [alert]}


def run(args: argparse.Namespace) -> int:
    namespace, container = SERVICES[args.service]
    token_file, env_file = args.dir / "receiver-token", args.dir / "sandbox" / "env"
    if not token_file.exists():
        return _fail(f"{token_file} not found; start `make run` first", code=2)
    if not env_file.exists():
        return _fail(f"no sandbox in {args.dir}: demo-alert breaks and alerts on the sandbox `make run` starts",
                     code=2)
    apps, core = _clients(env_file)
    bad = None if args.no_release else release_bad_image(apps, namespace, args.service, container)
    pod, uid, created = current_pod(apps, core, namespace, args.service, image=bad)
    starts_at = max(dt.datetime.now(dt.timezone.utc), created)     # after the release, as a real alert
    payload = crash_looping_payload(namespace, pod, container, starts_at=starts_at, uid=uid)
    response = httpx.post(f"{args.receiver}/alerts/alertmanager", json=payload, timeout=30,
                          headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
    outcome = (response.json().get("outcomes") or [{}])[0] if response.status_code in (202, 422, 503) else {}
    print(f"alert KubePodCrashLooping for pod {namespace}/{pod} (firing since {starts_at:%H:%M:%S} UTC): receiver "
          f"answered {response.status_code} {outcome.get('outcome') or response.text[:300]}"
          + (f" ({outcome['reason']})" if outcome.get("reason") else f", {outcome.get('target', '')}"))
    if outcome.get("outcome") != "started":
        return _fail("no run started; see the reason above (another --service may be free)")
    return report_run(args.api_url, payload["alerts"][0]["fingerprint"], starts_at, args.wait)


def _clients(env_file: Path):
    from kubernetes import client, config
    kubeconfig = next(line.split("=", 1)[1].strip("'") for line in env_file.read_text().splitlines()
                      if line.startswith("export KUBECONFIG="))
    api = config.new_client_from_config(config_file=kubeconfig)
    return client.AppsV1Api(api), client.CoreV1Api(api)


def release_bad_image(apps, namespace: str, name: str, container: str) -> str:
    current = apps.read_namespaced_deployment(name, namespace).spec.template.spec.containers[0].image
    bad = current.split(":")[0] + ":9.9.9-crashloop"
    apps.patch_namespaced_deployment(name, namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": container, "image": bad}]}}}})
    print(f"released {bad} to {namespace}/{name} (it will crash loop)")
    return bad


def current_pod(apps, core, namespace: str, name: str, *, image: str | None,
                timeout: float = 30) -> tuple[str, str, dt.datetime]:
    """(name, uid, ReplicaSet creation time) of a pod of the Deployment's current ReplicaSet (running
    `image`, when given), waiting for the controllers to create it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = apps.read_namespaced_deployment(name, namespace)
        revision = (deployment.metadata.annotations or {}).get(REVISION)
        for rs in apps.list_namespaced_replica_set(namespace).items:
            owners = rs.metadata.owner_references or []
            if not any(o.uid == deployment.metadata.uid for o in owners) or \
                    (rs.metadata.annotations or {}).get(REVISION) != revision or \
                    (image and rs.spec.template.spec.containers[0].image != image):
                continue
            pods = [p for p in core.list_namespaced_pod(namespace).items
                    if any(o.uid == rs.metadata.uid for o in p.metadata.owner_references or [])]
            if pods:
                pod = min(pods, key=lambda p: p.metadata.name)
                return pod.metadata.name, pod.metadata.uid, rs.metadata.creation_timestamp
        time.sleep(0.5)
    raise SystemExit(f"runbooks demo-alert: no pod of {namespace}/{name}'s current ReplicaSet after {timeout:.0f}s")


def report_run(api_url: str, fingerprint: str, since: dt.datetime, wait: float) -> int:
    """Wait for the run the alert started, until it waits at its gate or ends; print how to approve it."""
    deadline = time.monotonic() + wait
    run = _poll(lambda: _run_for(api_url, fingerprint, since), deadline)
    if run is None:
        return _fail(f"no {RUNBOOK} run appeared within {wait:.0f}s; see the Prefect UI (Automations, Runs)")
    print(f"run {run['id']} ({run['name']}) started: {api_url.removesuffix('/api')}/runs/flow-run/{run['id']}")
    run = _poll(lambda: _settled(api_url, run["id"]), deadline) or run
    if run["state_type"] == "PAUSED":
        runbooks = Path(sys.executable).parent / "runbooks"
        shown = os.path.relpath(runbooks) if runbooks.is_relative_to(Path.cwd()) else str(runbooks)
        print("it waits at its approval gate; answer it as someone other than its requester (alert:alertmanager):")
        print(f"  PREFECT_API_URL={api_url} {shown} approve {run['id']} --as YOUR_NAME")
    else:
        print(f"it is {run['state_name']}" + (f": {run['state']['message']}" if (run.get("state") or {}).get("message")
                                              else ""))
    return 0


def _run_for(api_url: str, fingerprint: str, since: dt.datetime) -> dict | None:
    body = {"deployments": {"name": {"any_": [RUNBOOK]}},
            "flow_runs": {"expected_start_time": {"after_": (since - dt.timedelta(seconds=5)).isoformat()}},
            "sort": "EXPECTED_START_TIME_DESC", "limit": 50}
    runs = _api(api_url, "POST", "/flow_runs/filter", json=body)
    return next((r for r in runs if ((r["parameters"].get("alert") or {}).get("fingerprint") == fingerprint)), None)


def _settled(api_url: str, run_id: str) -> dict | None:
    run = _api(api_url, "GET", f"/flow_runs/{run_id}")
    return run if run["state_type"] in ("PAUSED", "COMPLETED", "FAILED", "CANCELLED", "CRASHED") else None


def _api(api_url: str, method: str, path: str, **kwargs):
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    response = httpx.request(method, api_url.rstrip("/") + path, timeout=10,
                             auth=tuple(auth.split(":", 1)) if auth else None, **kwargs)
    response.raise_for_status()
    return response.json()


def _poll(probe, deadline: float):
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    return None


def _fail(message: str, code: int = 1) -> int:
    print(f"runbooks demo-alert: {message}", file=sys.stderr)
    return code
