"""tasks/azure and tasks/clients against the Azure stand-in: the real azure-mgmt-containerservice client and a real
ClientSecretCredential (found by DefaultAzureCredential in the environment) over HTTPS verified against the
stand-in's CA; the real kubernetes client against the Kubernetes sandbox the AKS cluster is made of."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
from kubernetes import client as k8s

from plans.pools import PoolSettings
from sandbox.azure.env import azure_identity_env
from tasks.azure.agentpools import (get_agent_pool, list_agent_pools, restore_agent_pool, scale_agent_pool,
                                    set_pool_autoscaler, wait_for_pool_operation)
from tasks.azure.clusters import cluster_kubernetes_client, get_cluster
from tasks.clients import arm_client, azure_credential
from tasks.errors import CatalogError, ConflictError, OperationFailed, TargetNotFound
from tests.aks_helpers import aks, changes, pool_nodes, running_estate, use_identity
from tests.sandbox.azure_helpers import claims

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore:Logger .prefect.task_runs. attempted to send logs")]


@pytest.fixture(scope="module")
def estate():
    with running_estate() as both:
        yield both


@pytest.fixture
def kube(estate):
    return estate[0]


@pytest.fixture
def azure(estate, monkeypatch) -> Iterator:
    use_identity(estate[1], monkeypatch)
    yield estate[1]
    estate[1].faults.clear()
    estate[1].operations.clear_faults()


@pytest.fixture
def arm(azure):
    cluster = aks(azure)
    client = arm_client(cluster, azure_credential(cluster))
    yield client
    client.close()


def where(azure) -> dict:
    return dict(resource_group=azure.config.resource_group, cluster=azure.config.cluster_name)


def test_default_credential_finds_a_client_secret_credential_at_the_stand_ins_authority(azure):
    mark = azure.requests.mark()
    credential = azure_credential(aks(azure))
    token = credential.get_token(aks(azure).arm_scope()).token
    assert type(credential._successful_credential._credential).__name__ == "ClientSecretCredential"
    assert claims(token)["appid"] == azure.config.client_id and claims(token)["aud"] == f"{azure.url}/"
    sent = [(e.method, e.path) for e in azure.requests.entries(mark)]
    assert sent == [("GET", f"/{azure.config.tenant_id}/v2.0/.well-known/openid-configuration"),
                    ("POST", f"/{azure.config.tenant_id}/oauth2/v2.0/token")]    # instance discovery is off
    assert azure.config.client_secret not in str([e.body for e in azure.requests.entries(mark)])


def test_the_sandbox_identity_is_adopted_with_its_authority_and_never_replaces_a_real_one(azure):
    env = {k: str(v) for k, v in azure.credentials().env().items()}
    adopted = azure_identity_env(env)
    assert list(adopted)[0] == "AZURE_AUTHORITY_HOST" and adopted["AZURE_AUTHORITY_HOST"] == azure.url
    assert adopted["AZURE_CLIENT_SECRET"] == azure.config.client_secret
    assert azure_identity_env({**env, "AZURE_CLIENT_ID": "a-real-one"}) == {}
    assert azure_identity_env({k: v for k, v in env.items() if k != "RUNBOOKS_AZURE_AUTHORITY"}) == {}


def test_a_client_secret_is_never_sent_to_another_authority(azure, monkeypatch):
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "login.microsoftonline.com")
    mark = azure.requests.mark()
    with pytest.raises(CatalogError, match="refusing to send the secret there"):
        azure_credential(aks(azure))
    assert azure.requests.entries(mark) == []


def test_get_cluster_and_a_wrong_cluster_named_with_the_ones_that_exist(azure, arm):
    state = get_cluster(arm, resource_group=azure.config.resource_group, name=azure.config.cluster_name)
    assert (state.name, state.provisioning_state, state.aad, sorted(state.pools)) == (
        azure.config.cluster_name, "Succeeded", False, ["system", "user"])
    with pytest.raises(TargetNotFound, match=rf"aks-nope not found; clusters in the subscription: "
                                             rf"{azure.config.resource_group}/{azure.config.cluster_name}"):
        get_cluster(arm, resource_group=azure.config.resource_group, name="aks-nope")


def test_pools_are_listed_and_read_and_an_unknown_one_names_the_allowed(azure, arm):
    pools = {p.name: p for p in list_agent_pools(arm, **where(azure))}
    assert {n: (p.mode, p.count, p.enable_auto_scaling) for n, p in pools.items()} == {
        "system": ("System", 1, False), "user": ("User", 3, False)}
    assert get_agent_pool(arm, pool="user", **where(azure)).e_tag == pools["user"].e_tag
    with pytest.raises(TargetNotFound, match="agent pool 'gpu' not found .*; allowed: system, user"):
        get_agent_pool(arm, pool="gpu", **where(azure))


def test_scaling_a_pool_puts_the_whole_pool_and_waits_for_its_operation(azure, arm, kube):
    mark = azure.requests.mark()
    write = scale_agent_pool(arm, pool="user", count=4, expected=PoolSettings(count=3), **where(azure))
    assert write.changed and write.previous == PoolSettings(count=3) and write.operation
    pool = wait_for_pool_operation(arm, write=write, poll_seconds=0.02, **where(azure))
    assert (pool.count, pool.provisioning_state) == (4, "Succeeded") and len(pool_nodes(kube, "user")) == 4
    [put] = [e for e in changes(azure, mark)]
    assert put.method == "PUT" and put.body["properties"]["count"] == 4
    assert put.body["properties"]["vmSize"] == "Standard_D8s_v5"              # the whole pool, as read
    restore_agent_pool(arm, write=write, poll_seconds=0.02, **where(azure))
    back = wait_for_pool_operation(arm, write=scale_agent_pool(arm, pool="user", count=3, **where(azure)),
                                   **where(azure))
    assert back.count == 3 and len(pool_nodes(kube, "user")) == 3


def test_a_write_based_on_a_stale_read_is_refused_412_and_changes_nothing(azure, arm):
    """If-Match on the eTag read: someone's write between our GET and PUT makes AKS answer 412."""
    other = arm_client(aks(azure), azure_credential(aks(azure)))

    class Racing:                      # the real client; someone else writes right after our read
        def __init__(self, real):
            self.real = real

        def get(self, *args, **kwargs):
            model = self.real.get(*args, **kwargs)
            body = model.as_dict()
            body["properties"]["nodeLabels"] = {"team": "platform"}
            other.agent_pools.begin_create_or_update(*args, body).result()
            return model

        def __getattr__(self, name):
            return getattr(self.real, name)

    racing = type("Client", (), {"agent_pools": Racing(arm.agent_pools)})()
    with pytest.raises(ConflictError, match="412 PreconditionFailed"):
        scale_agent_pool.fn(racing, pool="user", count=5, **where(azure))
    pool = get_agent_pool(arm, pool="user", **where(azure))
    assert pool.count == 3
    body = arm.agent_pools.get(azure.config.resource_group, azure.config.cluster_name, "user").as_dict()
    body["properties"].pop("nodeLabels")
    other.agent_pools.begin_create_or_update(azure.config.resource_group, azure.config.cluster_name, "user",
                                             body).result()
    other.close()


def test_autoscaler_bounds_are_set_apart_from_the_count_and_restored_exactly(azure, arm):
    write = set_pool_autoscaler(arm, pool="user", min_count=2, max_count=5, **where(azure))
    pool = wait_for_pool_operation(arm, write=write, **where(azure))
    assert (pool.enable_auto_scaling, pool.min_count, pool.max_count, pool.count) == (True, 2, 5, 3)
    assert write.previous == PoolSettings(count=3)
    wait_for_pool_operation(arm, write=restore_agent_pool(arm, write=write, **where(azure)), **where(azure))
    assert get_agent_pool(arm, pool="user", **where(azure)).settings == PoolSettings(count=3)


def test_a_dry_run_write_reads_and_writes_nothing(azure, arm):
    mark = azure.requests.mark()
    write = scale_agent_pool(arm, pool="user", count=7, dry_run=True, **where(azure))
    assert not write.changed and write.dry_run and changes(azure, mark) == []


def test_an_operation_that_ends_failed_raises_its_code_and_the_undo_restores_the_exact_previous_value(azure, arm,
                                                                                                   kube):
    azure.operations.fail_next("QuotaExceeded", "Operation could not be completed as it results in exceeding "
                                                "approved Total Regional Cores quota.", pool="user")
    write = scale_agent_pool(arm, pool="user", count=6, **where(azure))
    with pytest.raises(OperationFailed, match="ended Failed: QuotaExceeded") as failed:
        wait_for_pool_operation(arm, write=write, **where(azure))
    assert failed.value.code == "QuotaExceeded"
    assert get_agent_pool(arm, pool="user", **where(azure)).provisioning_state == "Failed"
    restored = wait_for_pool_operation(arm, write=restore_agent_pool(arm, write=write, **where(azure)),
                                       **where(azure))
    assert (restored.settings, restored.provisioning_state) == (PoolSettings(count=3), "Succeeded")
    assert len(pool_nodes(kube, "user")) == 3


def test_a_throttled_read_is_retried_after_its_retry_after(azure, arm):
    azure.faults.add(verb="get", path="*/agentPools/user", status=429, retry_after=1, times=1)
    mark = azure.requests.mark()
    get_agent_pool(arm, pool="user", **where(azure))
    reads = [e for e in azure.requests.entries(mark) if e.path.endswith("/agentPools/user")]
    assert [e.status for e in reads] == [429, 200] and reads[1].time - reads[0].time >= 1.0


def test_a_throttled_operation_poll_resumes_the_same_operation(azure, arm):
    write = scale_agent_pool(arm, pool="user", count=4, **where(azure))
    azure.faults.add(verb="get", path="*/operations/*", status=429, retry_after=1, times=1)
    started = time.monotonic()
    assert wait_for_pool_operation(arm, write=write, **where(azure)).count == 4
    assert time.monotonic() - started >= 1.0
    assert [e.method for e in azure.requests.writes(0) if e.path.endswith("agentPools/user")].count("PUT") >= 1
    wait_for_pool_operation(arm, write=restore_agent_pool(arm, write=write, **where(azure)), **where(azure))


def test_user_credentials_become_a_kubernetes_client(azure, arm, kube):
    cluster = aks(azure)
    api = cluster_kubernetes_client(arm, cluster, azure_credential(cluster))
    try:
        names = {n.metadata.name for n in k8s.CoreV1Api(api).list_node().items}
    finally:
        api.close()
    assert names == {n["metadata"]["name"] for n in kube.list("Node")}


def test_an_aad_cluster_is_reached_with_an_entra_token_for_the_aks_server_application(azure, arm, kube):
    azure.add_cluster("aks-aad", aad=True, pools=[])
    cluster = aks(azure, "aks-aad")
    assert get_cluster(arm, resource_group=cluster.resource_group, name="aks-aad").aad
    user = arm.managed_clusters.list_cluster_user_credentials(cluster.resource_group, "aks-aad").kubeconfigs[0]
    assert b"kubelogin" in user.value and b"--server-id" in user.value       # an exec plugin, as AKS writes it
    api = cluster_kubernetes_client(arm, cluster, azure_credential(cluster))
    try:
        assert k8s.CoreV1Api(api).list_namespace().items
        token = api.configuration.api_key["authorization"].removeprefix("Bearer ")
    finally:
        api.close()
    assert claims(token)["aud"] == "6dae42f8-4368-4678-94ff-3960e28e3630"
    arm_token = azure_credential(cluster).get_token(cluster.arm_scope()).token
    assert not kube.bearer_checks[0](arm_token)                          # a token for ARM does not log in
