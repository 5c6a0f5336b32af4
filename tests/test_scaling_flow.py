"""scale-service end to end under Prefect: the real kubernetes, azure-mgmt-containerservice and azure-identity clients
against the Kubernetes sandbox and the Azure stand-in that serves it as an AKS cluster (production), with
verification, undo, refusals before any write, dry runs and the blast radius's raised approval level.

RBAC: the service changes made through a kubeconfig environment (`kubeconfig_env`) reach the cluster as the
`runbooks` ServiceAccount under the shipped RBAC (tests/rbac_helpers.py): a call its ClusterRole does not grant
fails the test, and the last test fails on a grant no test used. The AKS environment's runs reach it with the
kubeconfig of ARM's listClusterUserCredential, which is the cluster's own user (as on AKS, where it is not a
ServiceAccount), so no ClusterRole of ours governs them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.scaling import scale_service
from plans.plan import PlanningError
from plans.pools import PoolSettings
from tasks.clients import arm_client, azure_credential
from tasks.errors import CatalogError, OperationFailed, TargetNotFound, VerificationFailed
from tasks.gate_answer import answer_gate
from tests.aks_helpers import aks, changes, pool_nodes, running_estate, use_identity, write_aks_catalog
from tests.conftest import deployment_manifest
from tests.rbac_helpers import assert_every_grant_used, rbac_ledger, runbooks_token  # noqa: F401
from tests.runbook_helpers import answered_at_gate, held_until_watched, wait_healthy, write_catalog

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(180)]
CPU_LOAD = "sandbox.runbooks.dev/cpu-load"      # the sandbox HPA controller's simulated load (percent of a pod)
RBAC_ROLE = "runbooks-scale-service"            # deployments/kubernetes/rbac/scale-service.yaml


@pytest.fixture(scope="module")
def estate():
    with running_estate() as (kube, azure):
        for namespace, name in (("payments", "payments-api"), ("checkout", "checkout-web"), ("checkout", "cart")):
            wait_healthy(kube, namespace=namespace, name=name)
        yield kube, azure


@pytest.fixture
def kube(estate):
    return estate[0]


@pytest.fixture
def azure(estate, monkeypatch, tmp_path):
    kube, azure = estate
    use_identity(azure, monkeypatch)
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_aks_catalog(kube, azure, tmp_path)))
    yield azure
    azure.faults.clear()
    azure.operations.clear_faults()
    azure.operations.wait_idle()


@pytest.fixture
def kubeconfig_env(kube, tmp_path, monkeypatch, runbooks_token):
    """use(environment): the estate's cluster as a kubeconfig environment (`staging`: auto, `production`: one
    approver) whose kubeconfig carries the runbooks account's token, held to the shipped RBAC."""
    token = runbooks_token(kube)

    def use(environment: str = "staging", **overrides) -> str:
        overrides = {"scaling": {"max_replicas": 40}, "verify_timeout_seconds": 30, **overrides}
        monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_catalog(kube, tmp_path, environment, token=token,
                                                                 **overrides)))
        return environment
    return use


def use_catalog(kube, azure, tmp_path: Path, monkeypatch, **overrides) -> None:
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_aks_catalog(kube, azure, tmp_path, **overrides)))


def scale(target: dict, environment: str = "production", **params):
    """Run scale-service; the record, or the exception it ended with (the run's id in `scale.run_id`)."""
    state = scale_service(environment=environment, requested_by="alice", target=target, return_state=True, **params)
    scale.run_id = state.state_details.flow_run_id
    return state.result(raise_on_failure=False)


def reported_outcome() -> str:
    """The outcome in the report artifact of the last `scale` run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    with get_client(sync_client=True) as client:
        [report] = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[scale.run_id]), key=ArtifactFilterKey(like_="runbook-report-%")))
    return report.metadata_["outcome"]


def replicas(kube, name: str = "payments-api", namespace: str = "payments") -> int:
    return kube.get("Deployment", name, namespace)["spec"]["replicas"]


def no_writes(kube, azure, since: float, *, read: tuple[str, ...] = ("kubernetes", "azure")) -> bool:
    """Neither stand-in's request log has a write since `since`; and, as the positive control that the logs
    recorded the run at all, each log named in `read` has its reads."""
    logs = {"kubernetes": kube.requests.entries(since), "azure": azure.requests.entries(since)}
    assert all(logs[name] for name in read), {name: len(entries) for name, entries in logs.items()}
    return kube.requests.writes(since) == [] and changes(azure, since) == []


def pinned(kube, name: str, replicas: int, cpu: str | None = None) -> None:
    """A Deployment spread over the user pool's nodes (a test's own workload, not a catalog service)."""
    manifest = deployment_manifest(name, replicas=replicas)
    spec = manifest["spec"]["template"]["spec"]
    spec["nodeSelector"] = {"kubernetes.azure.com/agentpool": "user"}
    if cpu:
        spec["containers"][0]["resources"] = {"requests": {"cpu": cpu}}
    kube.apply_object(manifest)
    kube.wait_for(lambda: (kube.get("Deployment", name, "default").get("status") or {}).get("readyReplicas")
                  == replicas)


def remove(kube, kind: str, name: str, namespace: str = "default") -> None:
    from sandbox.kubernetes.resources import BY_KIND
    kube.store.delete(BY_KIND[kind], namespace, name)


# -- services ---------------------------------------------------------------------------------------------

def test_replicas_scale_up_and_down_verified_on_the_aks_cluster(kube, azure):
    since = azure.requests.mark()
    up = scale({"kind": "replicas", "service": "payments-api", "replicas": 5})
    assert up.outcome == "succeeded" and replicas(kube) == 5, up.evidence
    assert any(e.startswith("PASS rollout complete") for e in up.evidence)
    assert any(e.startswith("PASS pods ready: 5/5") for e in up.evidence)
    assert [s.status for s in up.steps] == ["made"] and up.before["replicas"] == 3 and up.after["replicas"] == 5
    assert changes(azure, since) == []                                 # a service change writes nothing to ARM
    down = scale({"kind": "replicas", "service": "payments-api", "replicas": 3})
    assert down.outcome == "succeeded" and replicas(kube) == 3


def test_hpa_bounds_change_moves_the_replicas_and_is_verified_settled(kube, azure, kubeconfig_env):
    environment = kubeconfig_env()
    # the HPA controller takes its time: it acts only once the run's verification has listed the HPA unsettled,
    # so the run has to watch it (the `watch` of its ClusterRole)
    slow = held_until_watched(kube, "/apis/autoscaling/v2/namespaces/checkout/horizontalpodautoscalers",
                              "metadata.name=checkout-web")
    record = scale({"kind": "hpa", "service": "checkout-web", "min_replicas": 3, "max_replicas": 8},
                   environment=environment)
    slow.join(5)
    assert record.outcome == "succeeded", record.evidence
    hpa = kube.get("HorizontalPodAutoscaler", "checkout-web", "checkout")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert replicas(kube, "checkout-web", "checkout") == 3                # the HPA raised it to its new minimum
    assert any(e.startswith("PASS HPA settled") for e in record.evidence)
    assert record.before["hpa"] == "2-6" and record.after == {"replicas": 3, "ready": 3, "hpa": "3-8"}
    reset_checkout_web(kube)


def reset_checkout_web(kube) -> None:
    """The demo's checkout-web again: HPA 2-6 with no simulated load, 2 replicas."""
    hpa = kube.get("HorizontalPodAutoscaler", "checkout-web", "checkout")
    annotations = {k: v for k, v in (hpa["metadata"].get("annotations") or {}).items() if k != CPU_LOAD}
    kube.apply_object({**hpa, "metadata": {**hpa["metadata"], "annotations": annotations},
                       "spec": {**hpa["spec"], "minReplicas": 2, "maxReplicas": 6}})
    web = kube.get("Deployment", "checkout-web", "checkout")
    kube.apply_object({**web, "spec": {**web["spec"], "replicas": 2}})
    wait_healthy(kube, namespace="checkout", name="checkout-web")


def test_sustained_cpu_saturation_raises_a_maxed_out_hpa_within_the_quota(kube, azure, kubeconfig_env):
    """What the CPU saturation alert starts: the HPA already runs checkout-web at its maximum of 6 under a
    simulated load, so "scale up 50%" raises maxReplicas to 9, and the run verifies the HPA settled there."""
    from plans.trigger import AlertContext
    hpa = kube.get("HorizontalPodAutoscaler", "checkout-web", "checkout")
    kube.apply_object({**hpa, "metadata": {**hpa["metadata"], "annotations": {CPU_LOAD: "900"}}})
    try:
        kube.wait_for(lambda: replicas(kube, "checkout-web", "checkout") == 6)
        alert = AlertContext(source="alertmanager", name="DeploymentCPUSaturated", fingerprint="f1")
        record = scale({"kind": "scale-up", "service": "checkout-web", "percent": 50}, alert=alert,
                       environment=kubeconfig_env())
        assert record.outcome == "succeeded" and record.trigger.kind == "alert", record.evidence
        assert record.plan.changes[0].before == "2-6" and record.plan.changes[0].after == "2-9"
        assert kube.get("HorizontalPodAutoscaler", "checkout-web", "checkout")["spec"]["maxReplicas"] == 9
        assert replicas(kube, "checkout-web", "checkout") == 9
        assert any(e.startswith("PASS HPA settled: HPA checkout-web settled at 9") for e in record.evidence)
    finally:
        reset_checkout_web(kube)


def test_undo_after_a_failed_verification_restores_the_exact_previous_replicas(kube, azure, kubeconfig_env):
    """The plan fits, but the user pool is cordoned (maintenance) while the run waits at its gate: the new
    replicas stay Pending, verification fails at its deadline, and the undo scales back to exactly 3."""
    environment = kubeconfig_env("production", verify_timeout_seconds=1)        # one approver

    def cordon_then_approve(run_id: str) -> None:
        for name in pool_nodes(kube, "user"):
            node = kube.get("Node", name)
            kube.apply_object({**node, "spec": {**node.get("spec", {}), "unschedulable": True}})
        answer_gate(run_id, approver="bob", decision="approve")
    try:
        box, run_id = answered_at_gate(lambda: scale({"kind": "replicas", "service": "payments-api", "replicas": 5},
                                                     environment), "scale-service", cordon_then_approve)
    finally:
        for name in pool_nodes(kube, "user"):
            node = kube.get("Node", name)
            kube.apply_object({**node, "spec": {k: v for k, v in node["spec"].items() if k != "unschedulable"}})
    record = box["result"]
    assert isinstance(record, VerificationFailed) and "timed out after 1s" in str(record)
    assert reported_outcome() == "rolled-back" and replicas(kube) == 3
    wait_healthy(kube)


# -- node pools --------------------------------------------------------------------------------------------

def test_a_node_pool_up_and_down_end_to_end(kube, azure):
    up = scale({"kind": "node-pool", "pool": "user", "count": 4})
    assert up.outcome == "succeeded", up.evidence
    assert len(pool_nodes(kube, "user")) == 4 and azure.pool("user").count == 4
    assert any(e.startswith("PASS nodes ready: node pool user: 4/4") for e in up.evidence)
    down = scale({"kind": "node-pool", "pool": "user", "count": 3})
    assert down.outcome == "succeeded", down.evidence
    assert len(pool_nodes(kube, "user")) == 3 and any("payments-api available" in e for e in down.evidence)


def test_undo_after_a_failed_operation_restores_the_exact_previous_pool(kube, azure):
    azure.operations.fail_next("QuotaExceeded", "Operation could not be completed as it results in exceeding "
                                                "approved Total Regional Cores quota.", pool="user")
    record = scale({"kind": "node-pool", "pool": "user", "count": 5})
    assert isinstance(record, OperationFailed) and record.code == "QuotaExceeded"
    assert reported_outcome() == "rolled-back"
    pool = azure.pool("user")
    assert (pool.properties["count"], pool.properties["enableAutoScaling"], pool.provisioning_state) == (
        3, False, "Succeeded")
    assert len(pool_nodes(kube, "user")) == 3


@pytest.mark.parametrize("moment", ["as ARM accepts the PUT", "while ARM's operation runs"])
def test_a_run_interrupted_mid_change_puts_the_pool_back_exactly(kube, azure, moment):
    """Ctrl-C (KeyboardInterrupt in the run's thread: the kernel's path for a cancel's TerminationSignal too) as
    soon as ARM has accepted the PUT (the write task has not returned yet), or while the run follows ARM's
    operation: the kernel's undo waits for the operation to end, PUTs the previous settings back, verifies."""
    import _thread
    import signal
    import threading

    from flows.kernel.run import recent_runs
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    since = azure.requests.mark()

    def polled() -> bool:
        return any("/operations/" in e.path for e in azure.requests.entries(since))

    def interrupt_mid_change() -> None:
        with azure.operations.hold():
            kube.wait_for(lambda: azure.pool("user").provisioning_state == "Updating", timeout=60)
            if moment == "while ARM's operation runs":
                kube.wait_for(polled, timeout=60)
            _thread.interrupt_main()
            # Release the operation only once the undo runs: the kernel shields the undo from a second signal.
            kube.wait_for(lambda: signal.getsignal(signal.SIGINT) is not signal.default_int_handler, timeout=60)
    interrupter = threading.Thread(target=interrupt_mid_change, daemon=True)
    interrupter.start()
    try:
        stopped = scale({"kind": "node-pool", "pool": "user", "count": 5})
    except KeyboardInterrupt as exc:        # Prefect's engine ends the run and re-raises it
        stopped = exc
    interrupter.join(10)
    assert isinstance(stopped, KeyboardInterrupt), stopped
    scale.run_id = recent_runs()[-1]
    assert reported_outcome() == "cancelled"
    pool = azure.pool("user")
    assert (pool.properties["count"], pool.properties["enableAutoScaling"], pool.provisioning_state) == (
        3, False, "Succeeded")
    assert len(pool_nodes(kube, "user")) == 3
    assert [e.body["properties"]["count"] for e in changes(azure, since) if e.method == "PUT"] == [5, 3]


def test_autoscaler_bounds_then_a_manual_count_is_refused_with_what_to_do(kube, azure):
    record = scale({"kind": "node-pool-autoscaler", "pool": "user", "min_count": 2, "max_count": 5})
    assert record.outcome == "succeeded", record.evidence
    assert azure.pool("user").properties["enableAutoScaling"] is True
    since = azure.requests.mark()
    refused = scale({"kind": "node-pool", "pool": "user", "count": 4})
    assert isinstance(refused, PlanningError) and "owned by its cluster autoscaler" in str(refused)
    assert "node-pool-autoscaler" in str(refused) and no_writes(kube, azure, since)
    rg, name = azure.config.resource_group, azure.config.cluster_name     # the operator turns it off by hand
    client = arm_client(aks(azure), azure_credential(aks(azure)))
    body = client.agent_pools.get(rg, name, "user").as_dict()
    body["properties"].update(PoolSettings(count=3).properties())
    client.agent_pools.begin_create_or_update(rg, name, "user", body).result()
    client.close()
    assert azure.pool("user").properties["enableAutoScaling"] is False


def test_a_scale_in_that_strands_pods_or_meets_a_pdb_is_refused_before_any_write(kube, azure):
    # Three 2.5-CPU pods on 4-CPU nodes: one per node, so a pool of 1 has room for one of them.
    pinned(kube, "batch", 3, cpu="2500m")
    try:
        since = azure.requests.mark()
        stranded = scale({"kind": "node-pool", "pool": "user", "count": 1})
        assert isinstance(stranded, PlanningError) and "2 pod(s) on" in str(stranded) \
            and "would have nowhere to run" in str(stranded), stranded
        assert no_writes(kube, azure, since)
    finally:
        remove(kube, "Deployment", "batch")
    # A PodDisruptionBudget that allows no disruption now, over the pods of a service on the node a scale-in to
    # 2 removes (AKS removes the newest instance); they would fit elsewhere, so only the PDB blocks.
    victim = pool_nodes(kube, "user")[-1]
    pod = next(p for p in kube.list("Pod") if p["spec"].get("nodeName") == victim
               and not any(o["kind"] == "DaemonSet" for o in p["metadata"].get("ownerReferences") or []))
    namespace, app = pod["metadata"]["namespace"], pod["metadata"]["labels"]["app.kubernetes.io/name"]
    healthy = len([p for p in kube.list("Pod", namespace) if p["metadata"]["labels"].get("app.kubernetes.io/name")
                   == app])
    kube.apply_object({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "guarded", "namespace": namespace},
                       "spec": {"minAvailable": healthy, "selector": {"matchLabels": {"app.kubernetes.io/name": app}}}})
    try:
        kube.wait_for(lambda: (kube.get("PodDisruptionBudget", "guarded", namespace).get("status") or {})
                      .get("currentHealthy") == healthy)
        since = azure.requests.mark()
        blocked = scale({"kind": "node-pool", "pool": "user", "count": 2})
        assert isinstance(blocked, PlanningError) and f"PodDisruptionBudget {namespace}/guarded allows no " \
            f"disruption now ({healthy} healthy, {healthy} required)" in str(blocked), blocked
        assert "nowhere to run" not in str(blocked)
        assert no_writes(kube, azure, since) and len(pool_nodes(kube, "user")) == 3
    finally:
        remove(kube, "PodDisruptionBudget", "guarded", namespace)


# -- bad input, dry runs, approval -------------------------------------------------------------------------

@pytest.mark.parametrize("target, environment, error, message", [
    ({"kind": "replicas", "service": "payments-api", "replicas": -1}, "production", PlanningError,
     "replicas must be 0 or more, not -1"),
    ({"kind": "replicas", "service": "checkout-web", "replicas": 7}, "production", PlanningError,
     r"replicas 7 is above its maxReplicas .*allowed: 2-6"),
    ({"kind": "replicas", "service": "payments-api", "replicas": 41}, "production", PlanningError,
     "replicas 41 is above the environment's quota of 40 replicas per service"),
    ({"kind": "node-pool", "pool": "system", "count": 0}, "production", PlanningError,
     "System pool: it keeps at least 1 node; count must be 1-1000"),
    ({"kind": "node-pool", "pool": "user", "count": 1001}, "production", PlanningError,
     r"count must be 0-1000 for node pool user \(User mode\), not 1001"),
    ({"kind": "node-pool", "pool": "user", "count": 20}, "production", PlanningError,
     r"count 20 would let the cluster reach 21 nodes .* quota of 14 .*allowed: up to 13"),
    ({"kind": "node-pool", "pool": "gpu", "count": 2}, "production", TargetNotFound,
     "agent pool 'gpu' not found .*allowed: system, user"),
    ({"kind": "node-pool", "pool": "user", "count": 2}, "staging", CatalogError,
     "environment 'staging' is on a kubeconfig cluster, not an AKS cluster"),
])
def test_bad_input_is_refused_naming_the_limit_with_zero_writes(kube, azure, target, environment, error, message):
    since = azure.requests.mark()
    refused = scale(target, environment=environment)
    assert isinstance(refused, error) and re.search(message, str(refused)), refused
    read = () if environment == "staging" else ("azure",) if target.get("pool") == "gpu" else ("kubernetes", "azure")
    assert no_writes(kube, azure, since, read=read)


def test_a_wrong_cluster_is_named_with_the_clusters_that_exist(kube, azure, tmp_path, monkeypatch):
    use_catalog(kube, azure, tmp_path, monkeypatch, cluster="aks-nope")
    since = azure.requests.mark()
    refused = scale({"kind": "node-pool", "pool": "user", "count": 4})
    assert isinstance(refused, TargetNotFound) and f"aks-nope not found; clusters in the subscription: " \
        f"{azure.config.resource_group}/{azure.config.cluster_name}" in str(refused)
    assert no_writes(kube, azure, since, read=("azure",))


def test_dry_runs_write_nothing_to_either_stand_in(kube, azure):
    since = azure.requests.mark()
    pool = scale({"kind": "node-pool", "pool": "user", "count": 5}, dry_run=True)
    service = scale({"kind": "replicas", "service": "payments-api", "replicas": 6}, dry_run=True)
    assert (pool.outcome, service.outcome) == ("dry-run", "dry-run")
    assert pool.plan.changes[0].after == 5 and service.plan.changes[0].after == 6
    assert no_writes(kube, azure, since) and replicas(kube) == 3 and azure.pool("user").count == 3


def test_beyond_the_blast_radius_an_auto_approved_environment_asks_for_one_approver(kube, azure, kubeconfig_env):
    environment = kubeconfig_env()                                              # auto
    box, run_id = answered_at_gate(lambda: scale({"kind": "replicas", "service": "cart", "replicas": 5}, environment),
                                   "scale-service", lambda run: answer_gate(run, approver="bob", decision="approve"))
    record = box["result"]
    assert record.outcome == "succeeded" and [a.approver for a in record.approvals] == ["bob"]
    assert "more than 2x" in record.plan.escalation
    assert any("policy raised from auto to one" in t.message for t in record.timeline)
    cart = kube.get("Deployment", "cart", "checkout")
    kube.apply_object({**cart, "spec": {**cart["spec"], "replicas": 2}})


def test_the_command_line_takes_the_typed_target_as_json_and_refuses_bad_input_before_running(kube, azure, capsys):
    """`runbooks run scale-service --set 'target={...}'`: validated against the flow's types and the catalog."""
    from plans.scaling import PoolCount
    from runbooks.cli import main
    from runbooks.registry import load
    from runbooks.run_cmd import validate
    good = validate(load("scale-service"), {"environment": "production", "requested_by": "alice",
                                            "target": '{"kind": "node-pool", "pool": "user", "count": 4}'})
    assert good["target"] == PoolCount(pool="user", count=4)                  # the positive control
    since = azure.requests.mark()
    base = ["run", "scale-service", "--set", "environment=production", "--set", "requested_by=alice", "--set"]
    for target, message in (('target={"kind": "replicas", "service": "payment-api", "replicas": 4}',
                             "unknown service 'payment-api' in environment 'production'; allowed: cart, checkout-web"),
                            ('target={"kind": "replicas", "service": "cart", "replica": 4}', "parameter 'target'")):
        assert main([*base, target]) == 2
        stderr = capsys.readouterr().err
        assert message in stderr and "nothing was run" in stderr and "Traceback" not in stderr
    assert kube.requests.entries(since) == [] and azure.requests.entries(since) == []


def test_every_grant_of_the_scale_service_clusterrole_is_used_by_these_tests(request):
    """A grant no test of the runbook uses is one it may not need (last in the module)."""
    assert_every_grant_used(request)
