"""Shared pieces of the alert receiver's tests: a test estate, kube-prometheus-shaped alerts, real HTTP.

Why a fresh service per test: the session's Prefect test server runs automations, so once prefect.yaml's
trigger is registered (tests/test_prefect_yaml.py, tests/test_receiver_state.py) every started alert
leaves a run that never finishes (no worker), and that run keeps its object "in flight" for later alerts.
Each test takes services no other test (or module) has used, so no run, change record or receiver memory
from elsewhere can decide its outcome.

The alerts carry the labels kube-prometheus's kubernetes-mixin expressions leave on them: pod alerts
(KubePodCrashLooping: `max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}
[5m]) >= 1`) have namespace, pod, container, reason and uid; Deployment alerts have namespace and deployment,
and their `container` is kube-state-metrics' own (kube-rbac-proxy-main), not the service's.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.receiver import AlertDispatcher, Credentials, PrefectApi, ReceiverServer, signature
from deployments.rules import load_rules
from tasks.catalog import Catalog, load_catalog

TOKEN = "test-token-0123456789abcdef"
HMAC_KEY = "test-hmac-key-0123456789abcdef"
EVENT = "runbooks.alert.emergency-rollback"
CLUSTER = "aks-platform-prod"           # the shipped rules map it to production
SAFE = "bcdfghjklmnpqrstvwxz2456789"    # Kubernetes' SafeEncodeString alphabet
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "alerts"
POOL = 40


@dataclass(frozen=True)
class Svc:
    name: str
    namespace: str
    deployment: str

    @property
    def target(self) -> str:
        return f"production/{self.name}"

    def pod(self) -> str:
        """A pod name as a Deployment's ReplicaSet makes them: <deployment>-<pod-template-hash>-<suffix>."""
        return f"{self.deployment}-{''.join(random.choices(SAFE, k=10))}-{''.join(random.choices(SAFE, k=5))}"


class Estate:
    """A catalog file (production only: the shipped samples' three services plus a pool) for one module."""

    def __init__(self, directory: Path) -> None:
        tag = "".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=5))
        self.samples = {"payments-api": Svc("payments-api", "payments", "payments-api"),
                        "checkout-web": Svc("checkout-web", "checkout", "checkout-web"),
                        "cart": Svc("cart", "checkout", "cart")}
        self.pool = [Svc(f"{tag}-svc{i}", f"apps-{tag}", f"{tag}-svc{i}") for i in range(POOL)]
        # Two catalog entries for one Deployment (as staging and production may be): one object, one key.
        self.aliased = Svc(f"{tag}-shared", f"apps-{tag}", f"{tag}-shared")
        self.alias = Svc(f"{tag}-shared-alias", f"apps-{tag}", f"{tag}-shared")
        self._next = itertools.count()
        services = {s.name: {"namespace": s.namespace, "deployment": s.deployment}
                    for s in [*self.samples.values(), *self.pool, self.aliased, self.alias]}
        cluster = {"kind": "kubeconfig", "kubeconfig": str(directory / "kubeconfig"), "context": "test"}
        self.path = directory / "catalog.yaml"
        self.path.write_text(yaml.safe_dump({"environments": {"production": {
            "cluster": cluster, "production": True, "cooldown_seconds": 300, "services": services}}}))
        self.catalog: Catalog = load_catalog(self.path)

    def fresh(self) -> Svc:
        """A service no earlier test used."""
        return self.pool[next(self._next)]

    def key(self, svc: Svc) -> str:
        return self.catalog.deployment_target("production", svc.name).key


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> Estate:
    return Estate(tmp_path_factory.mktemp("estate"))


@pytest.fixture
def api(prefect_harness) -> str:
    import prefect.settings
    return prefect.settings.PREFECT_API_URL.value()


@pytest.fixture
def start_receiver(estate):
    """Start receivers (shipped rules, the module's estate) against an API URL; stopped after the test."""
    started: list[tuple[ReceiverServer, PrefectApi]] = []

    def start(api_url: str, **dispatcher_options) -> tuple[str, AlertDispatcher]:
        prefect = PrefectApi(api_url)
        dispatcher = AlertDispatcher(load_rules(catalog=estate.catalog), estate.catalog, prefect, **dispatcher_options)
        server = ReceiverServer(dispatcher, Credentials(token=TOKEN, hmac_key=HMAC_KEY), port=0).start()
        started.append((server, prefect))
        return server.url, dispatcher

    yield start
    for server, prefect in started:
        server.stop()
        prefect.close()


@pytest.fixture
def receiver(start_receiver, api) -> str:
    return start_receiver(api)[0]


@pytest.fixture(scope="module")
def armed(prefect_harness) -> str:
    """prefect.yaml's deployments and alert triggers registered in the test server, as `runbooks serve`
    does, so the receiver's events start real (never executed: no worker) runs. Returns the deployment id."""
    from prefect.client.orchestration import get_client

    from deployments.serve import runner_deployments
    [deployment_id] = [str(d.apply()) for d in runner_deployments() if d.name == "emergency-rollback"]
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name("alert-starts-emergency-rollback"), "the trigger is not armed"
    return deployment_id


def wait_run(api: str, fingerprint: str, timeout: float = 60) -> dict:
    """The emergency-rollback run the trigger started for an alert (by the alert's fingerprint)."""
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    body = {"deployments": {"name": {"any_": ["emergency-rollback"]}},
            "flow_runs": {"expected_start_time": {"after_": since}}, "limit": 200}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
        found = [r for r in runs if (r["parameters"].get("alert") or {}).get("fingerprint") == fingerprint]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no run was started for alert {fingerprint}")


# -- alerts as kube-prometheus sends them ------------------------------------------------------------------

def _alert(labels: dict, summary: str, *, status: str, fingerprint: str | None, starts_at: dt.datetime | None) -> dict:
    starts = starts_at or dt.datetime.now(dt.timezone.utc)
    return {"status": status, "labels": {"job": "kube-state-metrics", "prometheus": "monitoring/k8s", **labels},
            "annotations": {"summary": summary}, "fingerprint": fingerprint or uuid.uuid4().hex[:16],
            "startsAt": starts.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.monitoring.svc:9090/graph"}


def crash_looping(svc: Svc, *, pod: str | None = None, cluster: str | None = CLUSTER, status: str = "firing",
                  fingerprint: str | None = None, starts_at: dt.datetime | None = None) -> dict:
    labels = {"alertname": "KubePodCrashLooping", "namespace": svc.namespace, "pod": pod or svc.pod(),
              "container": "app", "reason": "CrashLoopBackOff", "severity": "warning", "uid": str(uuid.uuid4()),
              **({"cluster": cluster} if cluster else {})}
    return _alert(labels, "Pod is crash looping.", status=status, fingerprint=fingerprint, starts_at=starts_at)


def rollout_stuck(svc: Svc, *, cluster: str | None = CLUSTER, fingerprint: str | None = None) -> dict:
    labels = {"alertname": "KubeDeploymentRolloutStuck", "namespace": svc.namespace, "deployment": svc.deployment,
              "condition": "Progressing", "status": "false", "container": "kube-rbac-proxy-main",
              "severity": "warning", **({"cluster": cluster} if cluster else {})}
    return _alert(labels, "Deployment rollout is not progressing.", status="firing", fingerprint=fingerprint,
                  starts_at=None)


def replicas_mismatch(svc: Svc, *, cluster: str | None = CLUSTER, fingerprint: str | None = None) -> dict:
    labels = {"alertname": "KubeDeploymentReplicasMismatch", "namespace": svc.namespace,
              "deployment": svc.deployment, "container": "kube-rbac-proxy-main", "severity": "warning",
              **({"cluster": cluster} if cluster else {})}
    return _alert(labels, "Deployment has not matched the expected number of replicas.", status="firing",
                  fingerprint=fingerprint, starts_at=None)


def alertmanager(*alerts: dict) -> dict:
    return {"version": "4", "status": "firing", "receiver": "runbooks", "groupKey": "{}:{}", "truncatedAlerts": 0,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": list(alerts)}


def sample(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


# -- real HTTP ----------------------------------------------------------------------------------------------

def post(url: str, payload: dict | bytes, *, source: str = "alertmanager", token: str | None = TOKEN,
         headers: dict | None = None, timeout: float = 30) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}),
            **(headers or {})}
    return httpx.post(f"{url}/alerts/{source}", content=body, headers=sent, timeout=timeout)


def signed(body: bytes, *, at: float | None = None, key: str = HMAC_KEY) -> dict[str, str]:
    """Headers of a request signed at `at` (default now) as the README describes."""
    stamp = str(int(time.time() if at is None else at))
    return {"X-Runbooks-Timestamp": stamp, "X-Runbooks-Signature": signature(key, stamp, body)}


def outcomes(response: httpx.Response) -> list[str]:
    return [o["outcome"] for o in response.json()["outcomes"]]


def events_for(api: str, fingerprint: str) -> list[dict]:
    response = httpx.post(f"{api}/events/filter", json={"filter": {
        "event": {"name": [EVENT]}, "resource": {"id": [f"runbooks.alert.{fingerprint}"]}}, "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def settle(api: str, timeout: float = 60) -> None:
    """Post a marker event and wait until the server has stored it (and so everything posted before it):
    Prefect persists events asynchronously and in order."""
    marker = str(uuid.uuid4())
    event = {"occurred": dt.datetime.now(dt.timezone.utc).isoformat(), "event": "runbooks.test.marker",
             "resource": {"prefect.resource.id": f"runbooks.test.{marker}"}, "id": marker}
    httpx.post(f"{api}/events", json=[event]).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.post(f"{api}/events/filter", json={"filter": {"id": {"id": [marker]}}, "limit": 1})
        if found.json()["events"]:
            return
        time.sleep(0.2)
    raise AssertionError("the Prefect server did not store the marker event")


class StubApi(BaseHTTPRequestHandler):
    """A stand-in Prefect API: records what it was sent, answers filters with [] and posts with `status`."""
    status, requests = 204, []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, dict(self.headers), json.loads(body)))
        reply = b"[]" if self.path.endswith("/filter") else b""
        self.send_response(200 if reply else type(self).status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:        # the Prefect client asks for a CSRF token: 404 says this server has none
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub_api():
    StubApi.requests, StubApi.status = [], 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield StubApi, f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
