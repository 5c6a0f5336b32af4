"""certificate-renewal's AKS cluster certificate rotation under Prefect: the real azure-mgmt-containerservice and
azure-identity clients against the Azure stand-in serving the Kubernetes sandbox as an AKS cluster (production,
which auto-approves here). The gate appears anyway; approved, the API server presents a new serial on the wire;
rejected or dry run, the stand-ins' request logs show zero writes."""
from __future__ import annotations

import datetime as dt

import pytest

from flows.certificates import certificate_renewal
from plans.cluster_certificates import plan_rotation
from plans.plan import PlanningError
from plans.targets import CertificateSetTarget
from tasks.azure.clusters import rotate_cluster_certificates as rotate_certificates
from tasks.errors import ApprovalRejected, CatalogError, OperationFailed
from tasks.gate_answer import answer_gate
from tasks.tls import presented_certificate
from tests.aks_helpers import changes, running_estate, use_identity, write_aks_catalog
from tests.runbook_helpers import answered_at_gate, run_in_thread
from tests.sandbox.azure_helpers import arm_client, wait_for

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def estate():
    with running_estate() as both:
        yield both


@pytest.fixture
def stand_ins(estate, monkeypatch, tmp_path):
    """The estate, with `production` on its AKS cluster auto-approving and the stand-in's identity in use."""
    use_identity(estate[1], monkeypatch)
    monkeypatch.setenv("RUNBOOKS_CATALOG", str(write_aks_catalog(*estate, tmp_path, approval="auto")))
    yield estate
    estate[1].operations.wait_idle()


def rotate(environment: str = "production", **params):
    return certificate_renewal(environment=environment, requested_by="alice", reason="CA compromise drill",
                               rotate_cluster_certificates=True, **params)


def api_server_serial(kube) -> str:
    return presented_certificate("127.0.0.1", kube.port, "127.0.0.1").serial


def test_rotation_waits_for_a_person_in_an_auto_approved_environment_then_a_new_serial_is_served(stand_ins):
    kube, azure = stand_ins
    before, rotations, since = api_server_serial(kube), len(azure.cluster().certificates_rotated), azure.requests.mark()
    box, _ = answered_at_gate(rotate, "certificate-renewal",
                              lambda run: answer_gate(run, approver="bob", decision="approve", reason="drill"))
    record = box.get("result")
    assert record is not None and record.outcome == "succeeded", box
    assert [(a.approver, a.decision) for a in record.approvals] == [("bob", "approve")]
    assert "up to 30 minutes" in record.plan.summary and "API server is unavailable" in record.plan.summary
    assert [(e.method, e.path.rsplit("/", 1)[-1]) for e in changes(azure, since)] == [
        ("POST", "rotateClusterCertificates")]                     # one write, and only the rotation
    assert len(azure.cluster().certificates_rotated) == rotations + 1
    after = api_server_serial(kube)
    assert after != before
    assert any(e.startswith("PASS API server certificate rotated") and after in e for e in record.evidence)
    assert [s.status for s in record.steps] == ["made"] and "cannot be undone" in record.steps[0].no_undo
    assert any("az aks get-credentials" in step for step in record.next_steps)


def test_a_rejected_rotation_writes_nothing(stand_ins):
    kube, azure = stand_ins
    before, since = api_server_serial(kube), azure.requests.mark()
    kube_since = kube.requests.mark()
    box, _ = answered_at_gate(rotate, "certificate-renewal",
                              lambda run: answer_gate(run, approver="bob", decision="reject", reason="not today"))
    assert isinstance(box.get("error"), ApprovalRejected), box
    assert azure.requests.entries(since) and changes(azure, since) == []       # it read ARM, wrote nothing
    assert kube.requests.writes(kube_since) == [] and api_server_serial(kube) == before


def test_a_dry_run_plans_the_rotation_with_its_downtime_and_writes_nothing(stand_ins):
    kube, azure = stand_ins
    before, since, kube_since = api_server_serial(kube), azure.requests.mark(), kube.requests.mark()
    record = rotate(dry_run=True)
    assert record.outcome == "dry-run"
    [change] = record.plan.changes
    assert change.field == "certificates (rotateClusterCertificates)" and "up to 30 minutes" in change.after
    assert "serial " + before in change.before                                 # the API server's, by handshake
    assert azure.requests.entries(since) and changes(azure, since) == []
    assert kube.requests.writes(kube_since) == [] and api_server_serial(kube) == before


def test_rotation_is_refused_before_any_write_where_the_cluster_is_not_aks(stand_ins):
    kube, azure = stand_ins
    since, kube_since = azure.requests.mark(), kube.requests.mark()
    with pytest.raises(CatalogError):
        rotate("staging")                                                     # a kubeconfig environment
    assert changes(azure, since) == [] and kube.requests.writes(kube_since) == []


def test_an_environment_sharing_the_cluster_may_not_rotate_its_certificates():
    target = CertificateSetTarget(environment="staging", cluster="aks", scope="namespaces default")
    with pytest.raises(PlanningError, match="shares the cluster"):
        plan_rotation(target, [], cluster="rg/aks", owns_cluster=False, now=dt.datetime.now(dt.timezone.utc))


def test_a_retried_rotation_follows_the_running_one_instead_of_starting_another(estate):
    kube, azure = estate
    arm, group, name = arm_client(azure), azure.config.resource_group, azure.config.cluster_name
    since = azure.requests.mark()
    try:
        with azure.operations.hold():
            arm.managed_clusters.begin_rotate_cluster_certificates(group, name)      # the first attempt's POST
            thread, box = run_in_thread(lambda: rotate_certificates.fn(arm, resource_group=group, name=name,
                                                                       poll_seconds=0.02))
            wait_for(lambda: sum(e.method == "GET" and e.path.endswith(name) for e in azure.requests.entries(since))
                     >= 2)                                                          # the retry is following it
        thread.join(timeout=10)
    finally:
        arm.close()
    assert box.get("result") is not None and box["result"].provisioning_state == "Succeeded", box
    assert [e.path.rsplit("/", 1)[-1] for e in changes(azure, since)] == ["rotateClusterCertificates"]


def test_a_failed_rotation_raises_operation_failed_with_arms_code(estate):
    kube, azure = estate
    arm = arm_client(azure)
    azure.operations.fail_next("InternalOperationError", "rotation failed on a node",
                               name="RotatingClusterCertificates")
    try:
        with pytest.raises(OperationFailed) as failed:
            rotate_certificates.fn(arm, resource_group=azure.config.resource_group, name=azure.config.cluster_name,
                                   poll_seconds=0.02)
    finally:
        arm.close()
    assert failed.value.code == "InternalOperationError" and "rotation failed on a node" in str(failed.value)
