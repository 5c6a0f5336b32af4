"""Managed clusters through the real azure-mgmt-containerservice client: reads, user credentials that a real
kubernetes client uses against the Kubernetes sandbox, certificate rotation (202, Location 202 then 204),
ARM's headers, api-version, throttling and 5xx retried by the SDK's own retry policy."""
from __future__ import annotations

import base64
import ssl
import time
from typing import Iterator

import httpx
import pytest
import yaml
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from sandbox.azure.arm import API_VERSION
from sandbox.azure.server import AzureSandbox
from sandbox.server import DEMO_MANIFESTS, Sandbox
from tasks.tls import presented_certificate
from tests.conftest import start_sandbox
from tests.sandbox.azure_helpers import arm_client, credential, start_azure, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def kube() -> Iterator[Sandbox]:
    sandbox = start_sandbox(manifests=(DEMO_MANIFESTS,), tls=True, token="kube-t0ken")
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def azure(kube) -> Iterator[AzureSandbox]:
    stand_in = start_azure(kube)
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def client(azure):
    arm = arm_client(azure)
    yield arm
    arm.close()


@pytest.fixture(autouse=True)
def no_faults(azure):
    yield
    azure.faults.clear()


def test_clusters_are_listed_by_subscription_and_resource_group_and_describe_the_sandboxs_nodes(azure, client, kube):
    group, name = azure.config.resource_group, azure.config.cluster_name
    assert [c.name for c in client.managed_clusters.list()] == [name]
    assert [c.name for c in client.managed_clusters.list_by_resource_group(group)] == [name]
    cluster = client.managed_clusters.get(group, name)
    assert cluster.id == (f"/subscriptions/{azure.config.subscription_id}/resourcegroups/{group}/providers/"
                          f"Microsoft.ContainerService/managedClusters/{name}")
    assert cluster.type == "Microsoft.ContainerService/managedClusters"
    assert (cluster.location, cluster.provisioning_state, cluster.node_resource_group) == (
        "westeurope", "Succeeded", f"MC_{group}_{name}_westeurope")
    nodes = kube.list("Node")
    for profile in cluster.agent_pool_profiles:           # the demo estate's two pools, counts as kubectl shows
        members = [n for n in nodes if n["metadata"]["labels"]["kubernetes.azure.com/agentpool"] == profile.name]
        assert profile.count == len(members) > 0
        assert {n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in members} == {profile.vm_size}
    assert {(p.name, p.mode, p.count) for p in cluster.agent_pool_profiles} == {("system", "System", 1),
                                                                               ("user", "User", 3)}
    assert {e.query["api-version"] for e in azure.requests.entries() if e.path.startswith("/subscriptions")} == {
        API_VERSION}                                      # the SDK's default


def test_missing_clusters_and_resource_groups_are_arms_404s(azure, client):
    with pytest.raises(ResourceNotFoundError) as missing:
        client.managed_clusters.get(azure.config.resource_group, "no-such-cluster")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as group:
        list(client.managed_clusters.list_by_resource_group("rg-nope"))
    assert group.value.error.code == "ResourceGroupNotFound"


def test_user_credentials_give_a_kubeconfig_a_real_kubernetes_client_uses_against_the_sandbox(azure, client, kube):
    group, name = azure.config.resource_group, azure.config.cluster_name
    result = client.managed_clusters.list_cluster_user_credentials(group, name)
    assert [k.name for k in result.kubeconfigs] == ["clusterUser"]
    kubeconfig = yaml.safe_load(result.kubeconfigs[0].value)      # the SDK decodes the base64 into bytes
    assert kubeconfig["current-context"] == name
    assert kubeconfig["users"][0]["name"] == f"clusterUser_{group}_{name}"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == kube.url
    assert base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]) == kube.ca.cert_pem
    api = k8s_config.new_client_from_config_dict(kubeconfig)
    try:
        names = sorted(n.metadata.name for n in k8s.CoreV1Api(api).list_node().items)
    finally:
        api.close()
    assert names == sorted(n["metadata"]["name"] for n in kube.list("Node"))


def test_certificate_rotation_answers_202_and_its_location_202_then_204(azure, client, kube):
    group, name = azure.config.resource_group, azure.config.cluster_name
    served = presented_certificate("127.0.0.1", kube.port, "127.0.0.1").serial
    mark = azure.requests.mark()
    with azure.operations.hold():
        poller = client.managed_clusters.begin_rotate_cluster_certificates(group, name)
        assert client.managed_clusters.get(group, name).provisioning_state == "RotatingClusterCertificates"
        with pytest.raises(ResourceExistsError) as busy:           # no pool write while the cluster rotates
            client.agent_pools.begin_create_or_update(group, name, "user", {"properties": {"count": 3}})
        assert busy.value.error.code == "OperationNotAllowed" and "RotatingClusterCertificates" in str(busy.value)
        wait_for(lambda: any("operationresults" in e.path and e.status == 202 for e in azure.requests.entries(mark)))
    assert poller.result(timeout=10) is None
    log = [(e.method, e.path.rsplit("/", 1)[-1], e.status) for e in azure.requests.entries(mark)
           if e.method == "POST" or "operationresults" in e.path]
    assert log[0] == ("POST", "rotateClusterCertificates", 202)
    assert {s for _, _, s in log[1:-1]} == {202} and len(log) >= 3 and log[-1][2] == 204
    cluster = azure.cluster()
    assert cluster.provisioning_state == "Succeeded" and len(cluster.certificates_rotated) == 1
    assert presented_certificate("127.0.0.1", kube.port, "127.0.0.1").serial != served   # the API server's is new


def test_arm_answers_carry_request_ids_and_rate_limit_counters_and_require_an_api_version(azure):
    token = credential(azure).get_token("https://management.azure.com/.default").token
    verify = ssl.create_default_context(cafile=str(azure.ca_bundle))
    path = f"/subscriptions/{azure.config.subscription_id}/providers/Microsoft.ContainerService/managedClusters"
    with httpx.Client(base_url=azure.url, verify=verify, headers={"Authorization": f"Bearer {token}"}) as https:
        first = https.get(path, params={"api-version": API_VERSION}, headers={"x-ms-correlation-request-id": "c0ffee"})
        second = https.get(path, params={"api-version": API_VERSION})
        missing = https.get(path)
        unknown = https.get(path, params={"api-version": "2099-01-01"})
    assert first.headers["x-ms-correlation-request-id"] == "c0ffee" and first.headers["x-ms-request-id"]
    reads = [int(a.headers["x-ms-ratelimit-remaining-subscription-reads"]) for a in (first, second)]
    assert reads[1] == reads[0] - 1
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "NoRegisteredProviderFound"


def test_a_throttled_read_is_retried_by_the_sdk_after_its_retry_after(azure, client):
    azure.faults.add(verb="read", path="*/managedClusters/*", status=429, retry_after=1, times=1)
    started = time.monotonic()
    cluster = client.managed_clusters.get(azure.config.resource_group, azure.config.cluster_name)
    assert cluster.name == azure.config.cluster_name and time.monotonic() - started >= 1.0
    assert [e.status for e in azure.requests.entries()[-2:]] == [429, 200]


def test_throttling_answers_look_like_arms_and_5xx_are_retried_by_the_sdk(azure, client):
    token = credential(azure).get_token("https://management.azure.com/.default").token
    azure.faults.add(verb="write", path="*", status=429, retry_after=7, times=1)
    path = (f"/subscriptions/{azure.config.subscription_id}/resourceGroups/{azure.config.resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{azure.config.cluster_name}/listClusterUserCredential")
    throttled = httpx.post(f"{azure.url}{path}", params={"api-version": API_VERSION},
                           headers={"Authorization": f"Bearer {token}"},
                           verify=ssl.create_default_context(cafile=str(azure.ca_bundle)))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    azure.faults.add(verb="list", path="*", status=503, times=1)
    assert [p.name for p in client.agent_pools.list(azure.config.resource_group, azure.config.cluster_name)] == [
        "system", "user"]
    assert [e.status for e in azure.requests.entries()[-2:]] == [503, 200]
