"""The demo estate: AKS-like node agents on every node, and production and staging in namespaces of their
own, which the demo catalog maps each environment to (a staging run must never touch production)."""
from __future__ import annotations

import pytest

from sandbox.catalog import DEMO_SERVICES, DEMO_STAGING_SERVICES, demo_catalog

pytestmark = pytest.mark.timeout(60)
AGENTS = ("ama-logs", "azure-cns", "kube-proxy")
REVISION = "deployment.kubernetes.io/revision"


def test_kube_system_daemonsets_run_on_every_node_system_node_included(demo_sandbox):
    sb = demo_sandbox
    nodes = sorted(n["metadata"]["name"] for n in sb.list("Node"))
    assert any(t["key"] == "CriticalAddonsOnly" for n in sb.list("Node") for t in n["spec"].get("taints", []))
    assert sorted(d["metadata"]["name"] for d in sb.list("DaemonSet", "kube-system")) == list(AGENTS)
    for name in AGENTS:
        sb.wait_for(lambda: (sb.get("DaemonSet", name, "kube-system").get("status") or {})
                    .get("numberAvailable") == len(nodes))
        pods = [p for p in sb.list("Pod", "kube-system") if p["metadata"]["ownerReferences"][0]["name"] == name]
        assert sorted(p["spec"]["nodeName"] for p in pods) == nodes
    proxy = next(p for p in sb.list("Pod", "kube-system") if p["metadata"]["name"].startswith("kube-proxy-"))
    node = sb.get("Node", proxy["spec"]["nodeName"])
    assert proxy["status"]["podIP"] == next(a["address"] for a in node["status"]["addresses"]
                                            if a["type"] == "InternalIP")       # hostNetwork
    system = next(n for n in nodes if "system" in n)
    wanted = sum(sb.get("Deployment", s["deployment"], s["namespace"])["spec"]["replicas"]
                 for s in (*DEMO_SERVICES.values(), *DEMO_STAGING_SERVICES.values()))
    def scheduled_apps() -> list[dict]:
        return [p for p in sb.list("Pod") if p["metadata"]["namespace"] != "kube-system" and p["spec"].get("nodeName")]
    sb.wait_for(lambda: len(scheduled_apps()) >= wanted)
    assert all(p["spec"]["nodeName"] != system for p in scheduled_apps())


def test_staging_is_a_copy_of_production_in_its_own_namespaces(demo_sandbox):
    sb = demo_sandbox
    for name, prod in DEMO_SERVICES.items():
        staging = DEMO_STAGING_SERVICES[name]
        assert staging["namespace"] == f"{prod['namespace']}-staging" and staging["deployment"] == prod["deployment"]
        for ns in (prod["namespace"], staging["namespace"]):     # the release history is replayed on start
            sb.wait_for(lambda: sb.get("Deployment", name, ns)["metadata"].get("annotations", {}).get(REVISION) == "2")
        live, copy = (sb.get("Deployment", s["deployment"], s["namespace"]) for s in (prod, staging))
        assert copy["spec"]["template"] == live["spec"]["template"]
        previous = [rs for rs in sb.list("ReplicaSet", staging["namespace"])
                    if rs["metadata"]["annotations"][REVISION] == "1" and rs["metadata"]["name"].startswith(name)]
        assert len(previous) == 1                          # a release to roll back to, as in production
        for kind in ("Service", "PodDisruptionBudget"):
            assert {o["metadata"]["name"] for o in sb.list(kind, staging["namespace"])} == \
                {o["metadata"]["name"] for o in sb.list(kind, prod["namespace"])}
    assert {ns["metadata"]["name"] for ns in sb.list("Namespace")} >= {
        "kube-system", "payments", "checkout", "payments-staging", "checkout-staging"}


def test_demo_catalog_maps_each_environment_to_its_own_namespaces(tmp_path):
    catalog = demo_catalog(tmp_path / "kubeconfig")["environments"]
    assert catalog["production"]["services"] == DEMO_SERVICES
    assert catalog["staging"]["services"] == DEMO_STAGING_SERVICES
    production = {(s["namespace"], s["deployment"]) for s in catalog["production"]["services"].values()}
    staging = {(s["namespace"], s["deployment"]) for s in catalog["staging"]["services"].values()}
    assert not production & staging
    assert catalog["production"]["cluster"]["context"] == "sandbox"
