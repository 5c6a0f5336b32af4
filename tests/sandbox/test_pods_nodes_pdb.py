"""Scheduler, kubelet, node registration, disruption controller, and the pods/eviction and pods/log
subresources, driven through the sandbox and the real `kubernetes` client.

If the controller manager cannot build every controller (siblings written separately), the fixture runs
only the controllers under test, and ReplicaSet pods are created by hand as the ReplicaSet controller would.
"""
from __future__ import annotations

import json
import re

import kubernetes
import pytest
from kubernetes.client import V1DeleteOptions, V1Eviction, V1ObjectMeta
from kubernetes.client.rest import ApiException

from sandbox.kubernetes.controllers.nodes import NodeController
from sandbox.kubernetes.controllers.pdb import DisruptionController
from sandbox.kubernetes.controllers.pods import Kubelet, Scheduler, crash_schedule, normalize_image
from sandbox.server import Sandbox, SandboxConfig

NS = "default"


@pytest.fixture
def sb():
    sandbox = Sandbox(SandboxConfig(speed=20, tick_seconds=0.02))
    try:
        sandbox.controllers.build()
        sandbox.standalone = False
    except ImportError:
        sandbox.standalone = True
        sandbox.controllers.build = lambda: [NodeController(sandbox), Scheduler(sandbox), Kubelet(sandbox),
                                             DisruptionController(sandbox)]
    sandbox.start()
    sandbox.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def core(sb):
    client = kubernetes.config.new_client_from_config_dict(sb.kubeconfig())
    yield kubernetes.client.CoreV1Api(client)
    client.close()


def node(sb, name, *, unschedulable=False, labels=None, taints=None, ready=None):
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
           "spec": {"unschedulable": unschedulable, "taints": taints or []}}
    if ready is not None:
        obj["status"] = {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletNotReady"}]}
    return sb.apply_object(obj)


def pod(sb, name, image="nginx:1.25", *, labels=None, owner=None, **spec):
    containers = spec.pop("containers", None) or [{"name": "web", "image": image}]
    meta = {"name": name, "namespace": NS, "labels": labels or {"app": name}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "controller": True}]
    return sb.apply_object({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                            "spec": {"containers": containers, **spec}})


def replicaset(sb, name, replicas, labels, image="nginx:1.25"):
    """A ReplicaSet and its pods (made by the ReplicaSet controller, or by hand when it is not running)."""
    rs = sb.apply_object({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": NS},
                          "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                                   "template": {"metadata": {"labels": labels},
                                                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    if sb.standalone:
        for i in range(replicas):
            pod(sb, f"{name}-{i}", image, labels=labels, owner=rs)
    sb.wait_for(lambda: len(ready_pods(sb, labels)) == replicas)
    return rs


def pdb(sb, name, selector, **spec):
    return sb.apply_object({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": {"name": name, "namespace": NS},
                            "spec": {"selector": {"matchLabels": selector}, **spec}})


def cordon(sb, name, on):
    sb.store.mutate(sb.resource("Node"), None, name, lambda n: {**n, "spec": {**n["spec"], "unschedulable": on}})


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", ()))


def ready_pods(sb, labels):
    return [p for p in sb.list("Pod", NS) if ready(p)
            and all(p["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]


def condition(obj, kind):
    return next((c for c in obj.get("status", {}).get("conditions", ()) if c["type"] == kind), None)


def events(sb, name, reason=None):
    found = [e for e in sb.list("Event", NS) if e["involvedObject"]["name"] == name
             and (reason is None or e["reason"] == reason)]
    return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))     # in the order recorded


def pdb_status(sb, name, **want):
    """Wait for the PDB status to show `want`; returns it."""
    def check():
        status = sb.get("PodDisruptionBudget", name, NS).get("status", {})
        return status if all(status.get(k) == v for k, v in want.items()) else None
    return sb.wait_for(check, timeout=5)


def evict(core, name, dry_run=None):
    body = V1Eviction(metadata=V1ObjectMeta(name=name, namespace=NS),
                      delete_options=V1DeleteOptions(dry_run=dry_run) if dry_run else None)
    return core.create_namespaced_pod_eviction(name, NS, body)


# -- nodes and scheduling -----------------------------------------------------------------------------

def test_node_registration_fills_status_but_keeps_a_set_ready_condition(sb):
    node(sb, "n1")
    node(sb, "n2", ready="False")
    n1 = sb.wait_for(lambda: sb.get("Node", "n1").get("status", {}).get("nodeInfo") and sb.get("Node", "n1"))
    assert condition(n1, "Ready")["status"] == "True"
    assert condition(n1, "Ready")["reason"] == "KubeletReady"
    assert condition(n1, "MemoryPressure")["status"] == "False"
    assert n1["status"]["capacity"] == n1["status"]["allocatable"]
    assert n1["status"]["capacity"]["pods"] == "110"
    assert n1["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.0"
    assert {a["type"] for a in n1["status"]["addresses"]} == {"InternalIP", "Hostname"}
    n2 = sb.wait_for(lambda: sb.get("Node", "n2").get("status", {}).get("nodeInfo") and sb.get("Node", "n2"))
    assert condition(n2, "Ready")["status"] == "False"
    assert condition(n2, "DiskPressure")["status"] == "False"
    ips = {a["address"] for n in (n1, n2) for a in n["status"]["addresses"] if a["type"] == "InternalIP"}
    assert len(ips) == 2 and all(ip.startswith("10.240.0.") for ip in ips)


def test_scheduler_spreads_and_skips_cordoned_nodes(sb):
    for name in ("n1", "n2"):
        node(sb, name)
    node(sb, "n3", unschedulable=True)
    for i in range(4):
        pod(sb, f"p{i}")
    pods = sb.wait_for(lambda: (lambda ps: ps if all(p["spec"].get("nodeName") for p in ps) else None)(
        sb.list("Pod", NS)))
    placed = sorted(p["spec"]["nodeName"] for p in pods)
    assert placed == ["n1", "n1", "n2", "n2"]
    assert condition(pods[0], "PodScheduled")["status"] == "True"
    scheduled = events(sb, "p0", "Scheduled")
    assert scheduled[0]["message"] == f"Successfully assigned {NS}/p0 to {pods[0]['spec']['nodeName']}"


def test_pod_stays_pending_when_nothing_fits_then_schedules(sb):
    node(sb, "n1", unschedulable=True, labels={"disk": "ssd"})
    node(sb, "n2", labels={"disk": "ssd"}, taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    node(sb, "n3", labels={"disk": "hdd"})
    pod(sb, "db", nodeSelector={"disk": "ssd"})
    cond = sb.wait_for(lambda: (lambda c: c if c and c["status"] == "False" else None)(
        condition(sb.get("Pod", "db", NS), "PodScheduled")))
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated "
        "taint {dedicated: gpu}, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling.")
    passes = sb.controllers.passes
    node(sb, "n4", labels={"disk": "hdd"})            # a change that re-runs the scheduler without a fit
    sb.wait_for(lambda: sb.controllers.passes > passes + 3)
    failures = [e for e in events(sb, "db", "FailedScheduling") if e["message"] == cond["message"]]
    assert len(failures) == 1 and failures[0]["type"] == "Warning"
    assert not sb.get("Pod", "db", NS)["spec"].get("nodeName")
    pod(sb, "gpu", nodeSelector={"disk": "ssd"}, tolerations=[{"key": "dedicated", "operator": "Equal",
                                                               "value": "gpu", "effect": "NoSchedule"}])
    assert sb.wait_for(lambda: sb.get("Pod", "gpu", NS)["spec"].get("nodeName")) == "n2"
    cordon(sb, "n1", False)
    assert sb.wait_for(lambda: sb.get("Pod", "db", NS)["spec"].get("nodeName")) == "n1"


def test_scheduler_never_overcommits_requests_node_resources_fit(sb):
    """kube-scheduler's NodeResourcesFit: requests must fit allocatable (4 CPU here) less what is bound there."""
    for name in ("n1", "n2"):
        node(sb, name)
    big = {"containers": [{"name": "c", "image": "nginx:1.25", "resources": {"requests": {"cpu": "2500m"}}}]}
    for i in range(3):
        pod(sb, f"big{i}", **big)
    cond = sb.wait_for(lambda: (lambda c: c if c and c["status"] == "False" else None)(
        condition(sb.get("Pod", "big2", NS), "PodScheduled")))
    assert cond["message"].startswith("0/2 nodes are available: 2 Insufficient cpu.")
    assert sorted(sb.get("Pod", f"big{i}", NS)["spec"].get("nodeName") for i in range(2)) == ["n1", "n2"]
    node(sb, "n3")                                     # room appears: it schedules
    assert sb.wait_for(lambda: sb.get("Pod", "big2", NS)["spec"].get("nodeName")) == "n3"


# -- kubelet ------------------------------------------------------------------------------------------

def test_pod_becomes_ready(sb):
    node(sb, "n1")
    pod(sb, "web")
    p = sb.wait_for(lambda: (lambda p: p if ready(p) else None)(sb.get("Pod", "web", NS)))
    status = p["status"]
    assert status["phase"] == "Running"
    for kind in ("Initialized", "ContainersReady", "PodScheduled"):
        assert condition(p, kind)["status"] == "True"
    assert re.fullmatch(r"10\.244\.\d+\.\d+", status["podIP"])
    assert status["hostIP"].startswith("10.240.0.") and status["startTime"]
    (container,) = status["containerStatuses"]
    assert container["ready"] and container["started"] and container["restartCount"] == 0
    assert container["image"] == "docker.io/library/nginx:1.25"
    assert container["imageID"].startswith("docker.io/library/nginx@sha256:")
    assert container["state"]["running"]["startedAt"]
    assert [e["reason"] for e in events(sb, "web")][-4:] == ["Pulling", "Pulled", "Created", "Started"]


def test_pods_on_a_node_that_is_not_ready_do_not_start(sb):
    node(sb, "sick", ready="Unknown")
    pod(sb, "stuck", nodeName="sick")
    passes = sb.controllers.passes
    sb.wait_for(lambda: sb.controllers.passes > passes + 5)
    assert sb.get("Pod", "stuck", NS)["status"]["phase"] == "Pending"
    assert "containerStatuses" not in sb.get("Pod", "stuck", NS)["status"]
    sb.store.mutate(sb.resource("Node"), None, "sick", lambda n: {**n, "status": {**n["status"], "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
    sb.wait_for(lambda: ready(sb.get("Pod", "stuck", NS)))


def test_crashloop_pod_restarts_with_back_off_and_never_becomes_ready(sb, core):
    node(sb, "n1")
    pod(sb, "bad", "web:v2-crashloop")
    p = sb.wait_for(lambda: (lambda p: p if (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0)
                             >= 2 else None)(sb.get("Pod", "bad", NS)))
    assert p["status"]["phase"] == "Running"
    assert condition(p, "Ready")["status"] == "False"
    assert condition(p, "Ready")["reason"] == "ContainersNotReady"
    (container,) = p["status"]["containerStatuses"]
    waiting = container["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert re.fullmatch(r"back-off \d+s restarting failed container=web pod=bad_default\(.+\)", waiting["message"])
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert not container["ready"]
    backoffs = events(sb, "bad", "BackOff")
    assert len(backoffs) == 1 and backoffs[0]["count"] >= 2 and backoffs[0]["type"] == "Warning"   # aggregated
    assert backoffs[0]["message"].startswith("Back-off restarting failed container web in pod bad")
    log = core.read_namespaced_pod_log("bad", NS, previous=True)
    assert "panic: web:v2-crashloop: configuration invalid" in log


def test_crash_back_off_doubles_up_to_five_minutes():
    assert crash_schedule(0, 5) == (0, 0, 10)
    assert crash_schedule(0, 10) == (1, 10, 20)
    assert crash_schedule(0, 30) == (2, 30, 40)
    restarts, _, backoff = crash_schedule(0, 10_000)
    assert backoff == 300 and restarts > 10
    assert normalize_image("quay.io/org/app@sha256:ab") == "quay.io/org/app@sha256:ab"
    assert normalize_image("org/app") == "docker.io/org/app:latest"


# -- disruption budgets ---------------------------------------------------------------------------------

def test_pdb_status_numbers(sb):
    node(sb, "n1")
    replicaset(sb, "web", 3, {"app": "web", "tier": "front"})
    pdb(sb, "by-count", {"tier": "front"}, minAvailable=2)
    pdb(sb, "by-percent", {"tier": "front"}, minAvailable="50%")
    pdb(sb, "by-unavailable", {"tier": "front"}, maxUnavailable=1)
    status = pdb_status(sb, "by-count", expectedPods=3, currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1)
    assert status["observedGeneration"] == 1
    assert condition({"status": status}, "DisruptionAllowed")["reason"] == "SufficientPods"
    pdb_status(sb, "by-percent", expectedPods=3, desiredHealthy=2, disruptionsAllowed=1)
    pdb_status(sb, "by-unavailable", expectedPods=3, desiredHealthy=2, disruptionsAllowed=1)
    pod(sb, "solo", "web:v2-crashloop", labels={"tier": "front"})      # no controller: counts as one
    pdb_status(sb, "by-count", expectedPods=4, currentHealthy=3, desiredHealthy=2, disruptionsAllowed=1)
    pdb_status(sb, "by-percent", expectedPods=4, desiredHealthy=2, disruptionsAllowed=1)
    status = pdb_status(sb, "by-unavailable", expectedPods=4, currentHealthy=3, desiredHealthy=3,
                        disruptionsAllowed=0)
    assert condition({"status": status}, "DisruptionAllowed")["status"] == "False"
    assert condition({"status": status}, "DisruptionAllowed")["reason"] == "InsufficientPods"


def test_eviction_allowed_then_refused_when_budget_is_spent(sb, core):
    node(sb, "n1")
    node(sb, "n2")
    replicaset(sb, "api", 3, {"app": "api"})
    pdb(sb, "api-pdb", {"app": "api"}, minAvailable=2)
    pdb_status(sb, "api-pdb", disruptionsAllowed=1, currentHealthy=3)
    first, second = sorted(p["metadata"]["name"] for p in ready_pods(sb, {"app": "api"}))[:2]
    for name in ("n1", "n2"):                        # keep replacements Pending so the numbers hold still
        cordon(sb, name, True)
    evict(core, first, dry_run=["All"])
    assert sb.get("Pod", first, NS) and sb.get("PodDisruptionBudget", "api-pdb", NS)["status"]["disruptionsAllowed"] == 1
    evict(core, first)
    assert sb.store.find(sb.resource("Pod"), NS, first) is None
    with pytest.raises(ApiException) as refused:     # the eviction itself spent the budget
        evict(core, second)
    assert refused.value.status == 429
    pdb_status(sb, "api-pdb", disruptionsAllowed=0, currentHealthy=2)
    with pytest.raises(ApiException) as refused:
        evict(core, second)
    assert refused.value.status == 429
    body = json.loads(refused.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                          "The disruption budget api-pdb needs 2 healthy pods and has 2 currently"}]
    assert sb.get("Pod", second, NS)
    if not sb.standalone:                            # the ReplicaSet's replacement restores the budget
        cordon(sb, "n1", False)
        pdb_status(sb, "api-pdb", disruptionsAllowed=1, currentHealthy=3)
        evict(core, second)
        assert sb.store.find(sb.resource("Pod"), NS, second) is None


def test_eviction_errors_and_unguarded_pods(sb, core):
    node(sb, "n1")
    pod(sb, "lonely")
    sb.wait_for(lambda: ready(sb.get("Pod", "lonely", NS)))
    with pytest.raises(ApiException) as missing:
        evict(core, "ghost")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as mismatch:
        core.create_namespaced_pod_eviction("lonely", NS, V1Eviction(metadata=V1ObjectMeta(name="other")))
    assert mismatch.value.status == 400
    pod(sb, "twice", labels={"app": "twice", "tier": "x"})
    sb.wait_for(lambda: ready(sb.get("Pod", "twice", NS)))
    pdb(sb, "a", {"app": "twice"}, minAvailable=0)
    pdb(sb, "b", {"tier": "x"}, minAvailable=0)
    with pytest.raises(ApiException) as multiple:
        evict(core, "twice")
    assert multiple.value.status == 500
    assert "more than one PodDisruptionBudget" in json.loads(multiple.value.body)["message"]
    evict(core, "lonely")                                        # no budget: always allowed
    assert sb.store.find(sb.resource("Pod"), NS, "lonely") is None


def test_unready_pod_is_evicted_without_spending_the_budget(sb, core):
    node(sb, "n1")
    replicaset(sb, "svc", 2, {"app": "svc"})
    pod(sb, "broken", "svc:crashloop", labels={"app": "svc"})
    sb.wait_for(lambda: sb.get("Pod", "broken", NS)["status"]["phase"] == "Running")   # Pending skips budgets
    pdb(sb, "svc-pdb", {"app": "svc"}, minAvailable=1)
    pdb_status(sb, "svc-pdb", currentHealthy=2, desiredHealthy=1, disruptionsAllowed=1)
    evict(core, "broken")
    assert sb.store.find(sb.resource("Pod"), NS, "broken") is None
    assert sb.get("PodDisruptionBudget", "svc-pdb", NS)["status"]["disruptionsAllowed"] == 1


# -- logs ------------------------------------------------------------------------------------------------

def test_log_endpoint(sb, core):
    node(sb, "n1")
    node(sb, "down", ready="False")
    pod(sb, "multi", containers=[{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}])
    pod(sb, "waiting", nodeName="down")
    sb.wait_for(lambda: ready(sb.get("Pod", "multi", NS)))
    with pytest.raises(ApiException) as unnamed:
        core.read_namespaced_pod_log("multi", NS)
    assert unnamed.value.status == 400
    assert json.loads(unnamed.value.body)["message"] == \
        "a container name must be specified for pod multi, choose one of: [web side]"
    text = core.read_namespaced_pod_log("multi", NS, container="web")
    assert "INFO starting nginx:1.25" in text and "listening on :8080" in text
    assert len(core.read_namespaced_pod_log("multi", NS, container="web", tail_lines=1).splitlines()) == 1
    stamped = core.read_namespaced_pod_log("multi", NS, container="side", timestamps=True)
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line) for line in stamped.splitlines())
    with pytest.raises(ApiException) as previous:
        core.read_namespaced_pod_log("multi", NS, container="web", previous=True)
    assert previous.value.status == 400
    with pytest.raises(ApiException) as not_started:
        core.read_namespaced_pod_log("waiting", NS)
    assert json.loads(not_started.value.body)["message"] == \
        'container "web" in pod "waiting" is waiting to start: ContainerCreating'
