"""`runbooks demo-alert`: break a service in the sandbox and send the alert a monitoring stack would.

Ships a crash-looping image of the service (as a bad release would), then posts an Alertmanager webhook
(KubePodCrashLooping) to the receiver started by `runbooks up`, which starts emergency-rollback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path

import httpx

SERVICES = {"payments-api": ("payments", "api"), "checkout-web": ("checkout", "web"), "cart": ("checkout", "cart")}


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo-alert", help="make a sandbox service crash loop and alert on it",
                                 description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="the directory `runbooks up` uses")
    parser.add_argument("--service", default="payments-api", choices=sorted(SERVICES))
    parser.add_argument("--receiver", default="http://127.0.0.1:9095")
    parser.add_argument("--no-release", action="store_true", help="only send the alert")
    parser.set_defaults(func=run)


def alertmanager_payload(namespace: str, deployment: str, *, status: str = "firing") -> dict:
    labels = {"alertname": "KubePodCrashLooping", "namespace": namespace, "deployment": deployment,
              "severity": "critical", "cluster": "sandbox"}
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    alert = {"status": status, "labels": labels, "fingerprint": fingerprint, "startsAt": now,
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://127.0.0.1:9090/graph",
             "annotations": {"summary": f"{deployment} pods are crash looping after a release"}}
    return {"version": "4", "status": status, "receiver": "runbooks", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": [alert]}


def run(args: argparse.Namespace) -> int:
    namespace, container = SERVICES[args.service]
    token_file = args.dir / "receiver-token"
    env_file = args.dir / "sandbox" / "env"
    if not token_file.exists():
        print(f"runbooks demo-alert: {token_file} not found; start `make run` first", file=sys.stderr)
        return 2
    if not args.no_release:
        if not env_file.exists():
            print(f"runbooks demo-alert: no sandbox in {args.dir}; use --no-release against a real cluster",
                  file=sys.stderr)
            return 2
        release_bad_image(env_file, namespace, args.service, container)
    response = httpx.post(f"{args.receiver}/alerts/alertmanager", json=alertmanager_payload(namespace, args.service),
                          headers={"Authorization": f"Bearer {token_file.read_text().strip()}"}, timeout=30)
    print(f"receiver answered {response.status_code}: {response.text}")
    return 0 if response.status_code == 202 else 1


def release_bad_image(env_file: Path, namespace: str, name: str, container: str) -> None:
    from kubernetes import client, config
    kubeconfig = next(line.split("=", 1)[1].strip("'") for line in env_file.read_text().splitlines()
                      if line.startswith("export KUBECONFIG="))
    apps = client.AppsV1Api(config.new_client_from_config(config_file=kubeconfig))
    current = apps.read_namespaced_deployment(name, namespace).spec.template.spec.containers[0].image
    bad = current.split(":")[0] + ":9.9.9-crashloop"
    apps.patch_namespaced_deployment(name, namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": container, "image": bad}]}}}})
    print(f"released {bad} to {namespace}/{name} (it will crash loop)")
