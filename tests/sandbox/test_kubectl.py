"""kubectl against the sandbox: the conformance check that it behaves like a real API server.

Every test runs with the oldest and the newest kubectl on the machine (1.27 and 1.33).
"""
from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.conftest import deployment_manifest

from .kubectl_helpers import Kubectl, available_versions, kubectl_binary

pytestmark = pytest.mark.kubectl

REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture(params=available_versions() or pytest.skip("no kubectl on this machine", allow_module_level=True))
def kubectl(request, sandbox, kubeconfig) -> Kubectl:
    binary = kubectl_binary(request.param) or "kubectl"
    return Kubectl(binary, kubeconfig)


def apply(kubectl: Kubectl, manifest: dict) -> str:
    return kubectl.run("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout


def wait_rolled_out(kubectl: Kubectl, name: str = "web") -> None:
    kubectl.run("rollout", "status", f"deployment/{name}", "--timeout=30s")


def test_apply_creates_then_updates_with_strategic_merge(kubectl, sandbox):
    assert "deployment.apps/web created" in apply(kubectl, deployment_manifest(replicas=2))
    manifest = deployment_manifest(replicas=3)
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "blue"}]
    assert "deployment.apps/web configured" in apply(kubectl, manifest)
    assert "unchanged" in apply(kubectl, manifest)
    patch = next(r for r in sandbox.requests.entries() if r.method == "PATCH")
    assert patch.content_type == "application/strategic-merge-patch+json"
    stored = sandbox.get("Deployment", "web", "default")
    assert stored["spec"]["replicas"] == 3
    assert stored["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "blue"}]
    assert stored["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]


def test_get_json_shows_controller_made_objects(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=3))
    wait_rolled_out(kubectl)
    deploy = kubectl.json("get", "deployment", "web")
    assert deploy["status"]["readyReplicas"] == 3 and deploy["metadata"]["annotations"][REVISION] == "1"
    rs = kubectl.json("get", "replicasets", "-l", "app=web")["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods)
    assert all(p["metadata"]["labels"]["pod-template-hash"] == rs[0]["metadata"]["labels"]["pod-template-hash"]
               for p in pods)
    nodes = kubectl.json("get", "nodes")["items"]
    assert {n["metadata"]["name"] for n in nodes} == {"node-0", "node-1", "node-2"}
    table = kubectl.run("get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["web", "3/3", "3", "3"]


def test_get_watch_streams_changes(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=1))
    wait_rolled_out(kubectl)
    watcher = kubectl.popen("get", "deployment", "web", "-w", "-o", "json")
    try:
        time.sleep(0.5)
        kubectl.run("scale", "deployment/web", "--replicas=2")
        sandbox.wait_for(lambda: sandbox.get("Deployment", "web", "default")["status"].get("readyReplicas") == 2)
        time.sleep(0.5)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    decoder, seen, text = json.JSONDecoder(), [], out.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        seen.append(obj)
        text = text[end:].strip()
    assert seen[0]["spec"]["replicas"] == 1
    assert any(o["spec"]["replicas"] == 2 for o in seen[1:])


def test_scale_and_set_image(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=2))
    wait_rolled_out(kubectl)
    kubectl.run("scale", "deployment/web", "--replicas=4")
    scale = next(r for r in sandbox.requests.entries() if r.path.endswith("/scale") and r.method == "PATCH")
    assert scale.body == {"spec": {"replicas": 4}}
    kubectl.run("set", "image", "deployment/web", "app=web:v2")
    wait_rolled_out(kubectl)
    deploy = sandbox.get("Deployment", "web", "default")
    assert deploy["spec"]["replicas"] == 4
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "web:v2"
    assert deploy["metadata"]["annotations"][REVISION] == "2"
    pods = [p for p in sandbox.list("Pod", "default")]
    assert len(pods) == 4 and {p["spec"]["containers"][0]["image"] for p in pods} == {"web:v2"}


def test_rollout_status_fails_on_crashloop_after_progress_deadline(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=3, progress_deadline=60))
    wait_rolled_out(kubectl)
    kubectl.run("set", "image", "deployment/web", "app=web:v2-crashloop")
    result = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s", check=False)
    assert result.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in result.stderr
    progressing = next(c for c in sandbox.get("Deployment", "web", "default")["status"]["conditions"]
                       if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded" and progressing["status"] == "False"
    statuses = {p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
                for p in sandbox.list("Pod", "default") if "crashloop" in p["spec"]["containers"][0]["image"]}
    assert statuses == {"CrashLoopBackOff"}


def test_rollout_history_and_undo_restore_previous_template(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=3))
    wait_rolled_out(kubectl)
    v1_template = sandbox.get("Deployment", "web", "default")["spec"]["template"]
    kubectl.run("set", "image", "deployment/web", "app=web:v2-crashloop")
    sandbox.wait_for(lambda: sandbox.get("Deployment", "web", "default")["metadata"]["annotations"][REVISION] == "2")
    history = kubectl.run("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"]
    assert "rolled back" in kubectl.run("rollout", "undo", "deployment/web").stdout
    wait_rolled_out(kubectl)
    deploy = sandbox.get("Deployment", "web", "default")
    assert deploy["spec"]["template"] == v1_template
    assert deploy["metadata"]["annotations"][REVISION] == "3"
    history = kubectl.run("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["2", "3"]
    rs_v1 = next(rs for rs in sandbox.list("ReplicaSet", "default") if rs["spec"]["replicas"] == 3)
    assert rs_v1["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"


def test_cordon_uncordon(kubectl, sandbox):
    kubectl.run("cordon", "node-1")
    assert sandbox.get("Node", "node-1")["spec"]["unschedulable"] is True
    assert "SchedulingDisabled" in kubectl.run("get", "node", "node-1").stdout
    apply(kubectl, deployment_manifest(replicas=4))
    wait_rolled_out(kubectl)
    assert all(p["spec"]["nodeName"] != "node-1" for p in sandbox.list("Pod", "default"))
    kubectl.run("uncordon", "node-1")
    assert not sandbox.get("Node", "node-1")["spec"].get("unschedulable")


def test_drain_blocked_by_pdb_then_allowed(kubectl, sandbox):
    for node in ("node-1", "node-2"):                          # everything lands on node-0
        kubectl.run("cordon", node)
    apply(kubectl, deployment_manifest(replicas=3))
    wait_rolled_out(kubectl)
    apply(kubectl, {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}})
    sandbox.wait_for(lambda: sandbox.get("PodDisruptionBudget", "web", "default").get("status", {})
                     .get("currentHealthy") == 3)
    kubectl.run("uncordon", "node-1")
    kubectl.run("uncordon", "node-2")
    blocked = kubectl.run("drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=6s",
                          check=False, timeout=60)
    assert blocked.returncode != 0
    assert "disruption budget" in blocked.stderr or "global timeout reached" in blocked.stderr
    assert len([p for p in sandbox.list("Pod", "default") if p["spec"].get("nodeName") == "node-0"]) == 3
    kubectl.run("patch", "pdb", "web", "--type=merge", "-p", '{"spec":{"minAvailable":2}}')
    drained = kubectl.run("drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s",
                          timeout=90)
    assert "drained" in drained.stdout
    wait_rolled_out(kubectl)
    pods = sandbox.list("Pod", "default")
    assert len(pods) == 3 and all(p["spec"]["nodeName"] != "node-0" for p in pods)
    evictions = [r for r in sandbox.requests.entries() if r.path.endswith("/eviction")]
    assert {r.status for r in evictions} >= {429, 201}


def test_delete_cascades(kubectl, sandbox):
    apply(kubectl, deployment_manifest(replicas=2))
    wait_rolled_out(kubectl)
    assert 'deployment.apps "web" deleted' in kubectl.run("delete", "deployment", "web").stdout
    sandbox.wait_for(lambda: not sandbox.list("ReplicaSet", "default") and not sandbox.list("Pod", "default"))
    missing = kubectl.run("get", "deployment", "web", check=False)
    assert missing.returncode != 0 and 'deployments.apps "web" not found' in missing.stderr
