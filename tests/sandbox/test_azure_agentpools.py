"""Agent pools through the real azure-mgmt-containerservice client, as AKS runs them: PUT replaces the pool
and starts an operation (201 Creating / 200 Updating, then polled to Succeeded or Failed), pools scale real
Nodes in the Kubernetes sandbox (drains go through its eviction subresource and its PDBs), and AKS's
refusals (409 in flight, 412 stale eTag, 400 validation) arrive as the SDK's own exceptions."""
from __future__ import annotations

import re
import ssl
from typing import Iterator

import httpx
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from sandbox.azure.resources import LATEST_NODE_IMAGE
from sandbox.azure.server import AzureSandbox
from sandbox.server import DEMO_MANIFESTS, Sandbox
from tests.conftest import deployment_manifest, start_sandbox
from tests.sandbox.azure_helpers import arm_client, start_azure, wait_for

pytestmark = pytest.mark.timeout(60)
NODE_NAME = re.compile(r"^aks-(?P<pool>[a-z0-9]+)-\d{8}-vmss[0-9a-z]{6}$")


@pytest.fixture(scope="module")
def kube() -> Iterator[Sandbox]:
    sandbox = start_sandbox(manifests=(DEMO_MANIFESTS,))
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def azure(kube) -> Iterator[AzureSandbox]:
    stand_in = start_azure(kube)
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def pools(azure):
    client = arm_client(azure)
    yield client.agent_pools
    client.close()


@pytest.fixture
def rg_cluster(azure) -> tuple[str, str]:
    return azure.config.resource_group, azure.config.cluster_name


def put(pools, rg_cluster, name: str, **properties):
    return pools.begin_create_or_update(*rg_cluster, name, {"properties": {"vmSize": "Standard_D2s_v5", **properties}})


def pool_nodes(kube: Sandbox, pool: str) -> list[dict]:
    return sorted((n for n in kube.list("Node") if n["metadata"]["labels"].get("agentpool") == pool),
                  key=lambda n: n["metadata"]["name"])


def pinned_deployment(kube: Sandbox, name: str, pool: str, replicas: int) -> None:
    manifest = deployment_manifest(name, replicas=replicas)
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"agentpool": pool}
    kube.apply_object(manifest)
    wait_for(lambda: kube.get("Deployment", name, "default").get("status", {}).get("readyReplicas") == replicas)


def test_pools_are_listed_and_read_with_their_etags(pools, rg_cluster):
    listed = {p.name: p for p in pools.list(*rg_cluster)}
    assert set(listed) == {"system", "user"}
    user = pools.get(*rg_cluster, "user")
    assert (user.count, user.vm_size, user.mode, user.availability_zones) == (3, "Standard_D8s_v5", "User",
                                                                               ["1", "2", "3"])
    assert user.provisioning_state == "Succeeded" and user.e_tag == listed["user"].e_tag
    assert user.type == "Microsoft.ContainerService/managedClusters/agentPools" and user.id.endswith("/agentPools/user")
    assert listed["system"].node_taints == ["CriticalAddonsOnly=true:NoSchedule"]


def test_creating_a_pool_answers_201_creating_and_registers_nodes_named_and_labelled_as_aks(azure, pools, rg_cluster,
                                                                                          kube):
    mark = azure.requests.mark()
    with azure.operations.hold():
        poller = put(pools, rg_cluster, "batch", count=2, availabilityZones=["1", "2"], nodeLabels={"team": "data"},
                     nodeTaints=["workload=batch:NoSchedule"])
        assert pools.get(*rg_cluster, "batch").provisioning_state == "Creating"
        assert pool_nodes(kube, "batch") == []
    created = poller.result(timeout=10)
    assert created.provisioning_state == "Succeeded" and created.count == 2
    assert [(e.method, e.status) for e in azure.requests.entries(mark) if e.method == "PUT"] == [("PUT", 201)]
    nodes = pool_nodes(kube, "batch")
    assert [NODE_NAME.match(n["metadata"]["name"])["pool"] for n in nodes] == ["batch", "batch"]
    assert [n["metadata"]["name"][-6:] for n in nodes] == ["000000", "000001"]
    labels = nodes[1]["metadata"]["labels"]
    assert {k: labels[k] for k in ("agentpool", "kubernetes.azure.com/agentpool", "kubernetes.azure.com/mode",
                                   "node.kubernetes.io/instance-type", "topology.kubernetes.io/zone", "team")} == {
        "agentpool": "batch", "kubernetes.azure.com/agentpool": "batch", "kubernetes.azure.com/mode": "user",
        "node.kubernetes.io/instance-type": "Standard_D2s_v5", "topology.kubernetes.io/zone": "westeurope-2",
        "team": "data"}
    assert nodes[0]["spec"]["taints"] == [{"key": "workload", "value": "batch", "effect": "NoSchedule"}]
    assert all(c["status"] == "True" for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready")


def test_scaling_a_pool_up_adds_nodes_and_down_drains_and_removes_the_newest(azure, pools, rg_cluster, kube):
    put(pools, rg_cluster, "web", count=1).result(timeout=10)
    grown = put(pools, rg_cluster, "web", count=2).result(timeout=10)
    assert grown.count == 2 and [n["metadata"]["name"][-2:] for n in pool_nodes(kube, "web")] == ["00", "01"]
    pinned_deployment(kube, "web", "web", replicas=4)
    newest = pool_nodes(kube, "web")[1]["metadata"]["name"]
    on_newest = {p["metadata"]["name"] for p in kube.list("Pod", "default") if p["spec"].get("nodeName") == newest}
    assert on_newest                                   # the scheduler spread the pods over both nodes
    mark = kube.requests.mark()
    shrunk = put(pools, rg_cluster, "web", count=1).result(timeout=10)
    assert shrunk.count == 1 and shrunk.provisioning_state == "Succeeded"
    assert [n["metadata"]["name"] for n in pool_nodes(kube, "web")] == [newest[:-2] + "00"]
    writes = [(e.method, e.path.rsplit("/", 2)[-2:], e.status) for e in kube.requests.writes(mark)]
    assert writes[0] == ("PATCH", ["nodes", newest], 200)                          # cordoned first
    evicted = {path[0] for method, path, status in writes if path[-1] == "eviction" and status == 201}
    assert evicted == on_newest                                                    # then drained pod by pod
    assert writes[-1] == ("DELETE", ["nodes", newest], 200)                        # then deleted
    wait_for(lambda: kube.get("Deployment", "web", "default")["status"].get("readyReplicas") == 4)


def test_a_pdb_blocking_the_drain_ends_the_operation_failed_with_pod_drain_failure(azure, pools, rg_cluster, kube):
    put(pools, rg_cluster, "guarded", count=1, upgradeSettings={"drainTimeoutInMinutes": 1}).result(timeout=10)
    pinned_deployment(kube, "guarded", "guarded", replicas=1)
    kube.apply_object({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "guarded-pdb", "namespace": "default"},
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    wait_for(lambda: kube.get("PodDisruptionBudget", "guarded-pdb", "default").get("status", {}).get("currentHealthy"))
    with pytest.raises(HttpResponseError) as failed:
        put(pools, rg_cluster, "guarded", count=0, upgradeSettings={"drainTimeoutInMinutes": 1}).result(timeout=10)
    assert failed.value.error.code == "PodDrainFailure"
    assert "blocked by pdb guarded-pdb" in failed.value.error.message
    assert "Cannot evict pod as it would violate the pod's disruption budget" in failed.value.error.message
    assert pools.get(*rg_cluster, "guarded").provisioning_state == "Failed"
    [node] = pool_nodes(kube, "guarded")                   # still there, cordoned, its pod still running
    assert node["spec"]["unschedulable"] is True


def test_an_operation_past_the_vcpu_quota_ends_failed_with_quota_exceeded(azure, pools, rg_cluster, kube):
    quota = azure.vcpu_quota
    azure.vcpu_quota = azure.vcpus_in_use(azure.cluster()) + 2
    try:
        with pytest.raises(HttpResponseError) as failed:
            put(pools, rg_cluster, "big", count=1, vmSize="Standard_D4s_v5").result(timeout=10)
    finally:
        azure.vcpu_quota = quota
    assert failed.value.error.code == "QuotaExceeded" and "Additional Required: 4" in failed.value.error.message
    assert pools.get(*rg_cluster, "big").provisioning_state == "Failed" and pool_nodes(kube, "big") == []


def test_an_injected_operation_fault_ends_the_next_operation_failed_with_its_code(azure, pools, rg_cluster):
    verify = ssl.create_default_context(cafile=str(azure.ca_bundle))
    added = httpx.post(f"{azure.url}/_sandbox/operation-faults", verify=verify, json={
        "code": "AllocationFailed", "message": "Allocation failed.", "name": "Updating", "pool": "user"})
    assert added.status_code == 201
    with pytest.raises(HttpResponseError) as failed:
        put(pools, rg_cluster, "user", count=3, vmSize="Standard_D8s_v5", availabilityZones=["1", "2", "3"]).result(
            timeout=10)
    assert failed.value.error.code == "AllocationFailed"
    again = put(pools, rg_cluster, "user", count=3, vmSize="Standard_D8s_v5", availabilityZones=["1", "2", "3"])
    assert again.result(timeout=10).provisioning_state == "Succeeded"           # the fault fired once


def test_a_second_write_while_one_is_in_flight_gets_409_operation_not_allowed(azure, pools, rg_cluster):
    with azure.operations.hold():
        first = put(pools, rg_cluster, "busy", count=0)
        with pytest.raises(ResourceExistsError) as second:
            put(pools, rg_cluster, "busy", count=0)
        assert second.value.status_code == 409 and second.value.error.code == "OperationNotAllowed"
        assert "Another operation (Creating) is in progress" in second.value.error.message
    assert first.result(timeout=10).provisioning_state == "Succeeded"
    assert put(pools, rg_cluster, "busy", count=0).result(timeout=10).provisioning_state == "Succeeded"


def test_a_stale_if_match_gets_412_and_every_write_changes_the_etag(azure, pools, rg_cluster):
    before = put(pools, rg_cluster, "etags", count=0).result(timeout=10).e_tag
    body = {"properties": {"count": 0, "vmSize": "Standard_D2s_v5"}}
    after = pools.begin_create_or_update(*rg_cluster, "etags", body, etag=before,
                                         match_condition=MatchConditions.IfNotModified).result(timeout=10)
    assert after.e_tag != before
    with pytest.raises(ResourceModifiedError) as stale:
        put_kwargs = dict(etag=before, match_condition=MatchConditions.IfNotModified)
        pools.begin_create_or_update(*rg_cluster, "etags", body, **put_kwargs)
    assert stale.value.status_code == 412 and stale.value.error.code == "PreconditionFailed"
    with pytest.raises(ResourceExistsError):                     # If-None-Match: * on an existing pool
        pools.begin_create_or_update(*rg_cluster, "etags", body,
                                     match_condition=MatchConditions.IfMissing)
    assert pools.get(*rg_cluster, "etags").e_tag == after.e_tag  # refused writes changed nothing


def test_aks_validates_a_put_that_replaces_the_whole_pool(azure, pools, rg_cluster):
    def refusal(name: str, **properties) -> tuple[str, str]:
        with pytest.raises(HttpResponseError) as refused:
            pools.begin_create_or_update(*rg_cluster, name, {"properties": properties})
        assert refused.value.status_code == 400
        return refused.value.error.code, refused.value.error.message

    code, message = refusal("system", count=0, mode="System", vmSize="Standard_D4s_v5", availabilityZones=["1"])
    assert code == "InvalidParameter" and "agentPoolProfile.count was 0" in message and "system pool" in message
    assert "count is missing" in refusal("auto", enableAutoScaling=True, minCount=1, maxCount=3)[1]
    assert "maxCount:3" in refusal("auto", count=5, enableAutoScaling=True, minCount=1, maxCount=3)[1]
    assert refusal("user", count=3, vmSize="Standard_D16s_v5")[0] == "PropertyChangeNotAllowed"
    assert refusal("system", count=1, mode="User", vmSize="Standard_D4s_v5",
                   availabilityZones=["1"])[0] == "MustDefineAtLeastOneSystemPool"
    assert refusal("Bad_Name", count=1)[0] == "InvalidParameter"
    autoscaled = put(pools, rg_cluster, "auto", count=2, enableAutoScaling=True, minCount=1, maxCount=3)
    stored = autoscaled.result(timeout=10)
    assert (stored.enable_auto_scaling, stored.min_count, stored.max_count, stored.count) == (True, 1, 3, 2)
    replaced = put(pools, rg_cluster, "auto", count=2).result(timeout=10)     # omitted: back to the defaults
    assert (replaced.enable_auto_scaling, replaced.min_count, replaced.max_count) == (False, None, None)


def test_upgrading_the_node_image_reimages_each_node_in_place_behind_a_surge_node(azure, pools, rg_cluster, kube):
    put(pools, rg_cluster, "img", count=1).result(timeout=10)
    [original] = [n["metadata"]["name"] for n in pool_nodes(kube, "img")]
    mark = kube.requests.mark()
    assert pools.begin_upgrade_node_image_version(*rg_cluster, "img").result(timeout=10) is None
    pool = pools.get(*rg_cluster, "img")
    assert pool.node_image_version == LATEST_NODE_IMAGE and pool.provisioning_state == "Succeeded"
    [node] = pool_nodes(kube, "img")
    assert node["metadata"]["name"] == original and not node["spec"].get("unschedulable")
    assert node["metadata"]["labels"]["kubernetes.azure.com/node-image-version"] == LATEST_NODE_IMAGE
    surge = original[:-2] + "01"
    node_writes = [(e.method, e.path.rsplit("/", 1)[-1]) for e in kube.requests.writes(mark) if "/nodes" in e.path]
    assert node_writes[0] == ("POST", "nodes") and ("DELETE", surge) in node_writes
    assert azure.requests.entries(mark)[0].status == 202


def test_deleting_a_pool_removes_its_nodes_and_the_last_system_pool_cannot_go(azure, pools, rg_cluster, kube):
    put(pools, rg_cluster, "gone", count=1).result(timeout=10)
    pinned_deployment(kube, "gone", "gone", replicas=1)
    kube.apply_object({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "gone-pdb", "namespace": "default"},
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "gone"}}}})
    mark = kube.requests.mark()
    deleted = pools.begin_delete(*rg_cluster, "gone", ignore_pod_disruption_budget=True)   # the PDB cannot block
    assert deleted.result(timeout=10) is None
    assert pool_nodes(kube, "gone") == []
    pod_writes = {(e.method, e.path.rsplit("/", 1)[-1]) for e in kube.requests.writes(mark) if "/pods/" in e.path}
    assert pod_writes and {method for method, _ in pod_writes} == {"DELETE"}     # deleted, not evicted
    with pytest.raises(ResourceNotFoundError):
        pools.get(*rg_cluster, "gone")
    with pytest.raises(HttpResponseError) as refused:
        pools.begin_delete(*rg_cluster, "system")
    assert refused.value.error.code == "MustDefineAtLeastOneSystemPool"


def test_without_kubernetes_the_demo_cluster_describes_the_demo_manifests_nodes():
    azure = start_azure()
    try:
        pools = {p.name: p for p in azure.cluster().pools.values()}
        assert {n: (p.count, p.mode, p.properties["vmSize"]) for n, p in pools.items()} == {
            "system": (1, "System", "Standard_D4s_v5"), "user": (3, "User", "Standard_D8s_v5")}
        assert pools["user"].node_name(pools["user"].next_instance) == "aks-user-12345678-vmss000003"
    finally:
        azure.stop()
