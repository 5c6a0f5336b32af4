"""kubectl 1.27 and 1.33 against the new kinds: apply, server-side tables, wait and rollout status, and
`kubectl drain --ignore-daemonsets` meeting real DaemonSet pods."""
from __future__ import annotations

import pytest
import yaml

from .kubectl_helpers import Kubectl, available_versions, kubectl_binary
from .test_new_kinds import binding, daemonset, job

pytestmark = [pytest.mark.kubectl, pytest.mark.timeout(120)]


@pytest.fixture(params=available_versions() or pytest.skip("no kubectl on this machine", allow_module_level=True))
def kubectl(request, sandbox, kubeconfig) -> Kubectl:
    return Kubectl(kubectl_binary(request.param) or "kubectl", kubeconfig)


def apply(kubectl: Kubectl, *docs: dict) -> str:
    return kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all(docs)).stdout


def header(kubectl: Kubectl, *args: str) -> list[str]:
    return kubectl.run("get", *args).stdout.splitlines()[0].split()


def test_get_prints_the_real_columns_for_the_new_kinds(kubectl, sandbox):
    out = apply(kubectl, daemonset("agent"), job("migrate"),
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci", "namespace": "default"}},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": "reader", "namespace": "default"},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 **{**binding("read", "reader"), "metadata": {"name": "read", "namespace": "default"}}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge", "namespace": "default"},
                 "spec": {"type": "LoadBalancer", "selector": {"app": "agent"}, "ports": [{"port": 443}]}})
    assert "daemonset.apps/agent created" in out and "job.batch/migrate created" in out
    assert "rolebinding.rbac.authorization.k8s.io/read created" in out
    kubectl.run("rollout", "status", "daemonset/agent", "--timeout=30s")
    kubectl.run("wait", "--for=condition=complete", "job/migrate", "--timeout=30s")
    assert header(kubectl, "daemonsets") == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                                             "NODE", "SELECTOR", "AGE"]
    assert kubectl.run("get", "ds", "agent").stdout.splitlines()[1].split()[:7] == \
        ["agent", "3", "3", "3", "3", "3", "<none>"]
    jobs = kubectl.run("get", "jobs", "-o", "wide").stdout.splitlines()
    assert jobs[0].split()[:5] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert jobs[1].split()[:3] == ["migrate", "Complete", "1/1"]
    assert "Completed" in kubectl.run("get", "pods", "-l", "job-name=migrate").stdout
    assert [line.split()[:2] for line in kubectl.run("get", "sa").stdout.splitlines()] == \
        [["NAME", "SECRETS"], ["ci", "0"], ["default", "0"]]
    assert header(kubectl, "roles") == ["NAME", "CREATED", "AT"]
    bindings = kubectl.run("get", "rolebindings", "-o", "wide").stdout.splitlines()
    assert bindings[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert "Role/reader" in bindings[1] and "alice" in bindings[1] and "default/ci" in bindings[1]
    edge = kubectl.run("get", "svc", "edge").stdout.splitlines()[1].split()
    assert edge[1] == "LoadBalancer" and edge[2].startswith("10.0.") and edge[3] == "<pending>"
    assert edge[4].startswith("443:") and edge[4].endswith("/TCP")


def test_apply_cannot_change_a_bindings_role(kubectl, sandbox):
    doc = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           **{**binding("read", "reader"), "metadata": {"name": "read", "namespace": "default"}}}
    apply(kubectl, doc)
    doc["roleRef"] = {**doc["roleRef"], "name": "writer"}
    result = kubectl.run("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0
    assert 'The RoleBinding "read" is invalid: roleRef: Invalid value:' in result.stderr
    assert "cannot change roleRef" in result.stderr
    assert sandbox.get("RoleBinding", "read", "default")["roleRef"]["name"] == "reader"


def test_drain_skips_daemonset_pods_and_evicts_the_rest(kubectl, sandbox):
    web = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "web:1"}],
                                          "volumes": [{"name": "scratch", "emptyDir": {}}]}}}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
    apply(kubectl, daemonset("agent", tolerations=[{"operator": "Exists"}]), web, pdb)
    kubectl.run("rollout", "status", "daemonset/agent", "--timeout=30s")
    kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
    sandbox.wait_for(lambda: sandbox.get("PodDisruptionBudget", "web", "default")["status"]
                     .get("disruptionsAllowed") == 1)
    on_node = {p["metadata"]["name"]: p for p in sandbox.list("Pod", "default") if p["spec"]["nodeName"] == "node-0"}
    daemon = next(n for n, p in on_node.items() if p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet")

    refused = kubectl.run("drain", "node-0", "--delete-emptydir-data", "--timeout=20s", check=False)
    assert refused.returncode != 0 and "cannot delete DaemonSet-managed Pods" in refused.stderr
    mark = sandbox.requests.mark()
    drained = kubectl.run("drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s",
                          timeout=90)
    assert "node/node-0 drained" in drained.stdout
    assert f"ignoring DaemonSet-managed Pods: default/{daemon}" in drained.stdout + drained.stderr
    log = sandbox.requests.entries(mark)
    assert any(r.method == "GET" and r.path == "/apis/apps/v1/namespaces/default/daemonsets/agent" for r in log)
    evicted = {r.path.split("/")[-2] for r in log if r.path.endswith("/eviction") and r.status == 201}
    assert evicted == set(on_node) - {daemon} and evicted
    remaining = [p["metadata"]["name"] for p in sandbox.list("Pod", "default") if p["spec"]["nodeName"] == "node-0"]
    assert remaining == [daemon]
